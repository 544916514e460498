"""Write reviews.jsonl: product-review prompts, each with example reviews (some glowing, some
scathing, the mix differing by category), so the default model pre-trained on the file writes
both kinds.

    python examples/reviews/make_prompts.py        # rewrites examples/reviews/reviews.jsonl

The feedback loop then learns from `reward.py:positive` to write the glowing kind.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

PRODUCTS = {
    "kitchen": ("kettle", "toaster", "blender", "coffee grinder", "rice cooker"),
    "garden": ("hose", "lawn mower", "rake", "leaf blower", "watering can"),
    "audio": ("speaker", "headset", "turntable", "radio", "soundbar"),
}
ADJECTIVES = ("new", "cheap", "compact", "steel", "wireless", "red", "large", "basic")
GOOD = (
    "works great and I love it",
    "excellent quality, would buy again",
    "great value and very reliable",
    "sturdy, quiet and easy to use",
    "perfect, it does the job well",
    "love it, highly recommend it",
)
BAD = (
    "broke after a week, avoid it",
    "terrible quality and a waste of money",
    "cheap plastic, it stopped working",
    "awful, noisy and hard to use",
    "disappointing, I returned it",
    "poor build, do not buy it",
)


def rows(seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for (category, products), n_good in zip(PRODUCTS.items(), (2, 3, 4), strict=True):
        for product in products:
            for adjective in ADJECTIVES:
                examples = rng.sample(GOOD, n_good) + rng.sample(BAD, 6 - n_good)
                out.append(
                    {
                        "text": f"Review of the {adjective} {product}:",
                        "key": category,
                        "completion": examples,
                    }
                )
    return out


if __name__ == "__main__":
    path = Path(__file__).with_name("reviews.jsonl")
    path.write_text("".join(json.dumps(r) + "\n" for r in rows()))
    print(f"wrote {path}")
