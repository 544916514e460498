"""Prompts of the news-feed example: a reader's name plus a context, e.g. "Feed for bob, friday night:".

The reader in the prompt is what the policy must personalize to. Contexts are (day, time of day)
pairs; a fixed fifth of them is held out for evaluation, so `eval_prompts()` measures whether a
learned taste carries over to feed moments never trained on.

Token contract (shared by pre-training, rollout workers and evaluation): prompt ids are
`tokenizer(prompt.text, add_special_tokens=False)`; a completion is `" " + headline` followed by
the tokenizer's eos token. No bos token is prepended.
"""

from __future__ import annotations

from dataclasses import dataclass

from rewardloop.newsfeed.readers import READERS

DAYS: tuple[str, ...] = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
TIMES: tuple[str, ...] = ("morning", "noon", "afternoon", "evening", "night")


@dataclass(frozen=True)
class Prompt:
    text: str
    reader: str
    """The reader's name (the `prompt_key` of a reward request)."""


def prompt_text(reader: str, day: str, time: str) -> str:
    return f"{day.capitalize()} {time} feed for {reader}:"


def completion_text(headline: str) -> str:
    """The completion a policy should write for a headline (eos is appended as a token)."""
    return " " + headline.strip()


def _contexts(held_out: bool) -> list[tuple[str, str]]:
    return [
        (d, t)
        for i, d in enumerate(DAYS)
        for j, t in enumerate(TIMES)
        if ((i + 2 * j) % 5 == 0) == held_out
    ]


def train_prompts() -> list[Prompt]:
    """Every reader with every training context (28 contexts x 3 readers)."""
    return [Prompt(prompt_text(r.name, d, t), r.name) for r in READERS for d, t in _contexts(False)]


def eval_prompts() -> list[Prompt]:
    """Every reader with every held-out context (7 contexts x 3 readers), disjoint from training."""
    return [Prompt(prompt_text(r.name, d, t), r.name) for r in READERS for d, t in _contexts(True)]
