"""The prompt-file task's default model: a tiny GPT-2 pre-trained on the file's own text.

For users who bring prompts but no model. The tokenizer is trained on the file's prompts and
example completions; pre-training pairs are (prompt, completion) for every example completion
of a row, and for the others (first half of the prompt's words, the rest), so the model
writes in the file's language before the feedback loop shapes what it writes. The cache key
includes a hash of the rows, so an edited file builds a new model.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from rewardloop.config import RunConfig
from rewardloop.prompts import Prompt
from rewardloop.tinymodel import recipe
from rewardloop.tinymodel.pretrain import sample_texts

from .prompt_file import Row, split_rows

BUILD_FORMAT = 1


def pairs(rows: list[Row]) -> list[tuple[str, str]]:
    """(prompt, completion) text pairs to pre-train on."""
    out = []
    for r in rows:
        if r.completions:
            out += [(r.prompt.text, " " + c.strip()) for c in r.completions]
            continue
        words = r.prompt.text.split()
        if len(words) >= 2:
            half = len(words) // 2
            out.append((" ".join(words[:half]), " " + " ".join(words[half:])))
    return out or [(r.prompt.text, " " + r.prompt.text) for r in rows]


def make_recipe(cfg: RunConfig) -> recipe.Recipe:
    train, evaluation = split_rows(cfg.prompts)
    text_pairs = pairs(train)
    digest = hashlib.sha256(
        "\n".join(f"{p}\t{c}" for p, c in text_pairs).encode("utf-8")
    ).hexdigest()[:16]
    prompts = sorted({p for p, _ in text_pairs} | {r.prompt.text for r in evaluation})

    def completions(n: int, seed: int) -> recipe.Keyed:
        """Each completion keyed by its own prompt, so it is pre-trained under that prompt."""
        rng = random.Random(seed)
        return [rng.choice(text_pairs) for _ in range(n)]

    def report(model, tok, seed: int = 0) -> dict:
        shown = [r.prompt.text for r in evaluation[:8]]
        return {
            "samples": dict(zip(shown, sample_texts(model, tok, shown, seed=seed), strict=True))
        }

    return recipe.Recipe(
        "prompts",
        {"format": BUILD_FORMAT, "rows": digest},
        completions,
        lambda: [Prompt(p, p) for p in prompts],
        lambda: sorted({c.split()[0] for _, c in text_pairs if c.split()}),
        report,
        "sample completions in build_info.json",
    )


def ensure_default_model(cfg: RunConfig, seed: int = 0) -> Path:
    return recipe.ensure(make_recipe(cfg), cfg.model, seed)
