"""Prompts of the news-feed example: a context plus the reader, e.g. "Friday night feed for bob".

The reader in the prompt is what the policy must personalize to. The name is the prompt's last
token on purpose: the first headline token is predicted at the name's own position, so the
reader's embedding reaches that decision through the residual stream and personalizing is a
first-order change. (With the name earlier, e.g. "Feed for bob, friday night:", the model first
has to learn to attend back to it; in the minimal GRPO baseline that cost a ~300-step plateau.)

Contexts are (day, time of day) pairs; a fixed fifth of them is held out for evaluation, so
`eval_prompts()` measures whether a learned taste carries over to feed moments never trained on.

Token contract (shared by pre-training, rollout workers and evaluation): prompt ids are
`tokenizer(prompt.text, add_special_tokens=False)`; a completion is `" " + headline` followed by
the tokenizer's eos token. No bos token is prepended.
"""

from __future__ import annotations

from dataclasses import dataclass

from rewardloop.tasks.newsfeed.readers import READERS

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
TIMES = ("morning", "noon", "afternoon", "evening", "night")


@dataclass(frozen=True)
class Prompt:
    text: str
    reader: str
    """The reader's name (the `prompt_key` of a reward request)."""
    context: str = ""
    """The feed moment, e.g. "Friday night"."""

    @property
    def key(self) -> str:
        """The label of the prompt in per-key figures: the reader."""
        return self.reader


def prompt_text(reader: str, day: str, time: str) -> str:
    return f"{day.capitalize()} {time} feed for {reader}"


def completion_text(headline: str) -> str:
    """The completion a policy should write for a headline (eos is appended as a token)."""
    return " " + headline.strip()


def _prompts(held_out: bool) -> list[Prompt]:
    contexts = [
        (d, t)
        for i, d in enumerate(DAYS)
        for j, t in enumerate(TIMES)
        if ((i + 2 * j) % 5 == 0) == held_out
    ]
    return [
        Prompt(prompt_text(r.name, d, t), r.name, f"{d.capitalize()} {t}")
        for r in READERS
        for d, t in contexts
    ]


def train_prompts() -> list[Prompt]:
    """Every reader with every training context (28 contexts x 3 readers)."""
    return _prompts(held_out=False)


def eval_prompts() -> list[Prompt]:
    """Every reader with every held-out context (7 contexts x 3 readers), disjoint from training."""
    return _prompts(held_out=True)
