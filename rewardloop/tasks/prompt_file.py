"""The prompt-file task: train on any JSONL file of prompts, with any reward kind, no Python.

    rewardloop train --set prompts.path=my_prompts.jsonl \
        --set reward.kind=function --set reward.function=my_reward.py:score

One JSON object per line. `prompts.field` (default `text`) is the prompt; `prompts.key_field`
(default `key`) labels it for per-key metrics; `prompts.completion_field` (default
`completion`, optional) is an example answer, or a list of them, that the default model is
pre-trained on. Held-out
prompts come from `prompts.eval_path`, else from rows whose `prompts.split_field` is "eval",
else from a fixed `prompts.eval_fraction` of the prompts chosen by a hash of their text (the
same split on every machine and every run). This task has no simulated audience: evaluation
scores held-out prompts with the run's own reward.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from rewardloop.config import PromptsConfig, RunConfig
from rewardloop.errors import ConfigError
from rewardloop.prompts import Prompt, PromptSource
from rewardloop.tasks.base import Task


@dataclass(frozen=True)
class Row:
    prompt: Prompt
    completions: tuple[str, ...] = ()
    split: str = ""


def resolve(cfg: PromptsConfig, path: str, key: str = "prompts.path") -> Path:
    """A prompt file: absolute as given; relative, in datasets_dir first, then here."""
    p = Path(path).expanduser()
    candidates = [p] if p.is_absolute() else []
    if not p.is_absolute():
        if cfg.datasets_dir:
            candidates.append(Path(cfg.datasets_dir).expanduser() / p)
        candidates.append(p)
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    looked = ", ".join(str(c) for c in candidates)
    raise ConfigError(f"{key}: no file {path!r} (looked at {looked})")


def read_rows(cfg: PromptsConfig, path: Path) -> list[Row]:
    """Every row of a JSONL prompt file; ConfigError naming the line and the field otherwise."""
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"prompts.path: {path}:{n}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ConfigError(f"prompts.path: {path}:{n}: each line must be a JSON object")
            text = row.get(cfg.field)
            if not isinstance(text, str) or not text.strip():
                raise ConfigError(
                    f"prompts.field: {path}:{n} has no non-empty string field {cfg.field!r} "
                    f"(its fields: {', '.join(sorted(row)) or 'none'})"
                )
            rows.append(
                Row(
                    Prompt(text, str(row.get(cfg.key_field, ""))),
                    _completions(row.get(cfg.completion_field), cfg, path, n),
                    str(row.get(cfg.split_field, "")),
                )
            )
    if not rows:
        raise ConfigError(f"prompts.path: {path} has no prompts")
    return rows


def _completions(value, cfg: PromptsConfig, path: Path, n: int) -> tuple[str, ...]:
    if value is None:
        return ()
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ConfigError(
            f"prompts.completion_field: {path}:{n} field {cfg.completion_field!r} must be a "
            "string or a list of strings"
        )
    return tuple(v for v in values if v.strip())


def held_out(text: str, fraction: float) -> bool:
    """A fixed pseudo-random choice by text: the same prompts are held out everywhere."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def split_rows(cfg: PromptsConfig) -> tuple[list[Row], list[Row]]:
    """(training rows, held-out rows) as the prompts section asks."""
    rows = read_rows(cfg, resolve(cfg, cfg.path))
    if cfg.eval_path:
        train, evaluation = rows, read_rows(cfg, resolve(cfg, cfg.eval_path, "prompts.eval_path"))
    elif any(r.split == "eval" for r in rows):
        train = [r for r in rows if r.split != "eval"]
        evaluation = [r for r in rows if r.split == "eval"]
    else:
        evaluation = [r for r in rows if held_out(r.prompt.text, cfg.eval_fraction)]
        train = [r for r in rows if not held_out(r.prompt.text, cfg.eval_fraction)]
    if not train:
        raise ConfigError(
            f"prompts.eval_fraction: every prompt of {cfg.path} was held out; lower it"
        )
    if cfg.max_prompts:
        train = train[: cfg.max_prompts]
    return train, evaluation or train


def _prompts(cfg: RunConfig) -> PromptSource:
    train, evaluation = split_rows(cfg.prompts)
    return PromptSource([r.prompt for r in train], [r.prompt for r in evaluation])


def _localize(cfg: RunConfig) -> RunConfig:
    """prompts.path and prompts.eval_path as absolute paths (actors run elsewhere)."""
    from rewardloop.config import replace

    paths = {"path": str(resolve(cfg.prompts, cfg.prompts.path))}
    if cfg.prompts.eval_path:
        paths["eval_path"] = str(resolve(cfg.prompts, cfg.prompts.eval_path, "prompts.eval_path"))
    return replace(cfg, prompts=paths)


def _default_model(cfg: RunConfig, seed: int = 0) -> Path:
    from .prompt_file_model import ensure_default_model

    return ensure_default_model(cfg, seed=seed)


TASK = Task(
    name="prompts",
    description="your own JSONL prompt file, scored by the reward you configure",
    prompts=_prompts,
    default_model=_default_model,
    reads_prompts_section=True,
    localize=_localize,
)
