"""A reward function of your own: 1 for a glowing review, 0 for a scathing one.

    reward:
      kind: function
      function: examples/reviews/reward.py:positive

`positive(prompts, completions, metadata)` gets three equal-length lists and returns one number
per completion. A real one might call a sentiment model; this one counts words.
"""

from __future__ import annotations

import re

GOOD_WORDS = {
    "great",
    "love",
    "excellent",
    "perfect",
    "reliable",
    "sturdy",
    "quiet",
    "easy",
    "recommend",
    "value",
    "well",
    "again",
}
BAD_WORDS = {
    "broke",
    "avoid",
    "terrible",
    "waste",
    "cheap",
    "stopped",
    "awful",
    "noisy",
    "hard",
    "disappointing",
    "returned",
    "poor",
    "not",
}


def sentiment(text: str) -> float:
    """1.0 when good words outnumber bad ones, 0.0 when bad ones do, 0.5 otherwise."""
    words = re.findall(r"[a-z]+", text.lower())
    good = sum(w in GOOD_WORDS for w in words)
    bad = sum(w in BAD_WORDS for w in words)
    return 1.0 if good > bad else 0.0 if bad > good else 0.5


def positive(prompts: list[str], completions: list[str], metadata: list[dict]) -> list[float]:
    return [sentiment(c) for c in completions]
