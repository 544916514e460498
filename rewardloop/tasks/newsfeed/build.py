"""The news-feed default model: a tiny GPT-2 that writes headlines, built once and cached.

The build is the generic recipe (`rewardloop.tinymodel.recipe`); this module names the corpus.
Each pre-training example is "<prompt> <headline><eos>" with the reader and the context drawn
at random, independently of the headline's topic, so the built model writes every topic about
equally often for every reader: it can write headlines but has no idea of taste. Learning the
taste is the feedback loop's job. A headline's first word names its topic; the recipe makes
each such word one token, so the policy picks a topic with one token.
"""

from __future__ import annotations

from pathlib import Path

from rewardloop.config import ModelConfig
from rewardloop.tinymodel import recipe

from .corpus import CORPUS_VERSION, LEXICONS, generate_headlines
from .prompts import completion_text, eval_prompts, train_prompts
from .report import sample_report  # noqa: F401 - recipe.from_module reads it by name

BUILD_FORMAT = 1
"""Bump when the build recipe changes in a way the key fields do not capture."""


NAME = "newsfeed"
KEY = {"format": BUILD_FORMAT, "corpus_version": CORPUS_VERSION}
SUMMARY = "well-formed {well_formed:.2f}, like rates {like_rate}"


def completions(n: int, seed: int) -> recipe.Keyed:
    """n generated headlines as completions, each under any reader's prompt (key "")."""
    return [("", completion_text(h.text)) for h in generate_headlines(n, seed)]


def prompts() -> list:
    return train_prompts() + eval_prompts()


def first_words() -> list[str]:
    """The first word of every subject phrase, e.g. "Chipmaker", "Top"."""
    return sorted({s.split(" ")[0] for lex in LEXICONS.values() for s in lex.subjects})


RECIPE = recipe.from_module(__name__)


def build_key(cfg: ModelConfig, seed: int) -> dict:
    """Everything that affects the built model."""
    return recipe.build_key(RECIPE, cfg, seed)


def cache_path(cfg: ModelConfig, seed: int = 0) -> Path:
    return recipe.cache_path(RECIPE, cfg, seed)


def build_default_model(out_dir: Path, cfg: ModelConfig, seed: int = 0) -> dict:
    """Train tokenizer and model into `out_dir` (no caching, no lock); returns the build info."""
    return recipe.build(RECIPE, out_dir, cfg, seed)


def ensure_default_model(
    cfg: ModelConfig, seed: int = 0, lock_timeout_s: float | None = None
) -> Path:
    """The cached default model directory, building it first if needed (once, under a lock)."""
    timeout = lock_timeout_s if lock_timeout_s is not None else 600.0 + 10 * cfg.pretrain_seconds
    # looked up at call time, so a test can count builds by patching build_default_model
    return recipe.ensure_built(
        cache_path(cfg, seed), lambda tmp: build_default_model(tmp, cfg, seed), timeout
    )
