"""The help-desk default model: a tiny GPT-2 that answers customer questions, built once, cached.

The build is the generic recipe (`rewardloop.tinymodel.recipe`); this module names the corpus.
Each pre-training example is "<prompt> <answer><eos>": a question of some category followed by
an answer drawn from `corpus.PRETRAIN_MIX` (helpful, another category's steps, or generic
filler), so the built model answers fluently and usually on topic, yet only part of the time
helpfully. Pre-training is time-bound on one torch thread: a 0.5M-parameter model gains little
from more, and one thread keeps its pace when other processes compete for the cores.
"""

from __future__ import annotations

from pathlib import Path

from rewardloop.config import ModelConfig
from rewardloop.tinymodel import recipe

from .corpus import CORPUS_VERSION, GENERIC, OPENERS, STEPS, generate_answers
from .prompts import completion_text, eval_prompts, train_prompts
from .report import sample_report  # noqa: F401 - recipe.from_module reads it by name

BUILD_FORMAT = 2
"""Bump when the build recipe changes in a way the key fields do not capture."""


NAME = "helpdesk"
KEY = {"format": BUILD_FORMAT, "corpus_version": CORPUS_VERSION}
SUMMARY = "helpful rate {helpful_rate_mean:.2f}, kinds {kinds}"


def completions(n: int, seed: int) -> recipe.Keyed:
    """n generated answers as completions, each under a prompt of its own category."""
    return [(a.category, completion_text(a.text)) for a in generate_answers(n, seed)]


def prompts() -> list:
    return train_prompts() + eval_prompts()


def first_words() -> list[str]:
    """The first word of every step, opener and generic sentence, e.g. "Restart", "Sorry"."""
    phrases = [s for steps in STEPS.values() for s in steps] + list(OPENERS) + list(GENERIC)
    return sorted(
        {p.split(" ")[0].capitalize() for p in phrases if p}
        | {p.split(" ")[0] for steps in STEPS.values() for p in steps}
    )


RECIPE = recipe.from_module(__name__, use_steps=False, threads=1)  # time-bound, one thread


def cache_path(cfg: ModelConfig, seed: int = 0) -> Path:
    return recipe.cache_path(RECIPE, cfg, seed)


def ensure_default_model(
    cfg: ModelConfig, seed: int = 0, lock_timeout_s: float | None = None
) -> Path:
    """The cached default help-desk model directory, built first if needed (once, locked)."""
    return recipe.ensure(RECIPE, cfg, seed, lock_timeout_s)
