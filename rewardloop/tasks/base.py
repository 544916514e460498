"""The one small interface every task implements: prompts, audience, default model, metric.

A task is a value, not a class hierarchy: the registry (`rewardloop.tasks`) maps a name to a
module whose `TASK` is one of these. Nothing outside `rewardloop/tasks/` asks which task runs;
it asks the task.

- `prompts(cfg)`: the training and held-out prompts (`PromptSource.train`, `.evaluation`).
- `default_model(cfg, seed)`: the directory of the task's built-in model (built once, cached),
  used when `model.name_or_path` is `default`.
- `audience`: the simulated audience, if the task has one, as `module:callable` building a
  reward source from (RewardConfig, seed). It is what `reward.kind: persona` trains with and
  what evaluation reports beside the run's own reward. A string, because reward sources live
  in `rewardloop.feedback`, which tasks may not import.
- `raters`: the simulated user who rates through the feedback gateway's HTTP API
  (`feedback.simulated_raters`), as `module:callable` of (like_prob, dislike_prob); empty = none.
- `reads_prompts_section`: the task reads its prompts from the `prompts` section (a file);
  `localize(cfg)` makes such a task's file paths absolute before the config travels to actors.
- `metric`: the name of the audience's figure (e.g. `like_rate`); `summary_section`: where
  summary.json lists it per key (e.g. `readers`), empty for none.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from rewardloop.config import RunConfig
from rewardloop.prompts import PromptSource


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    prompts: Callable[[RunConfig], PromptSource]
    default_model: Callable[[RunConfig, int], Path]
    audience: str = ""
    raters: str = ""
    metric: str = "reward"
    summary_section: str = ""
    reads_prompts_section: bool = False
    localize: Callable[[RunConfig], RunConfig] = lambda cfg: cfg


def cached_model(build_module: str) -> Callable[[RunConfig, int], Path]:
    """`default_model` for a task whose `build_module` has `ensure_default_model(ModelConfig,
    seed)`; imported only when a model is needed (config validation never builds one)."""

    def default_model(cfg: RunConfig, seed: int = 0) -> Path:
        return importlib.import_module(build_module).ensure_default_model(cfg.model, seed=seed)

    return default_model


def keyword_clashes(
    keywords: dict[str, set[str]], neutral: Iterable[str] = (), what: str = ""
) -> list[str]:
    """Words two classes share, or a class shares with the neutral words: a judge that reads
    words can tell the classes apart only when this is empty (each task's corpus checks)."""
    neutral = set(neutral)
    clashes = []
    names = list(keywords)
    prefix = f"{what} " if what else ""
    for i, a in enumerate(names):
        clashes += [f"{w} ({prefix}{a}, neutral)" for w in sorted(keywords[a] & neutral)]
        for b in names[i + 1 :]:
            clashes += [f"{w} ({prefix}{a}, {b})" for w in sorted(keywords[a] & keywords[b])]
    return clashes
