"""`reward.kind: function`: any Python callable, named by import path, is a reward source.

    reward:
      kind: function
      function: my_package.rewards:politeness     # politeness(prompts, completions, metadata)
      function: rewards/politeness.py:score        # or a file, no package or PYTHONPATH needed

The callable gets three lists of equal length (prompt strings, completion strings, metadata
dicts) and returns one number per item, in order. It runs in the worker's process, so it
can hold a model; an answer of the wrong length or a non-number is an error naming the item.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import math
import numbers
import sys
import time
from collections.abc import Callable
from pathlib import Path

from rewardloop.errors import ConfigError, InvalidInput
from rewardloop.scoring import Score, ScoreRequest
from rewardloop.trajectory import RewardPart

from .base import RewardSource


def _module(name: str, key: str):
    """An importable module name, or a `.py` file (relative to the current directory) by path."""
    if not name.endswith(".py"):
        return importlib.import_module(name)
    path = Path(name).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"{key}: no file {name!r} (looked at {path})")
    module_name = f"rewardloop_user_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def import_callable(spec: str, key: str = "reward.function") -> Callable:
    """`package.module:attr` or `path/file.py:attr` -> the object; ConfigError naming `key`
    when it cannot be found."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(
            f"{key}: set it to `module.path:callable` or `file.py:callable`, got {spec!r}"
        )
    try:
        obj = _module(module_name, key)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{key}: cannot import {spec!r}: {exc}") from None
    if not callable(obj):
        raise ConfigError(f"{key}: {spec!r} is not callable")
    return obj


class FunctionReward(RewardSource):
    """Calls `fn(prompts, completions, metadata) -> list[float]` in process."""

    kind = "function"

    def __init__(self, fn: Callable | str, name: str = "function"):
        self.fn = import_callable(fn) if isinstance(fn, str) else fn
        self.name = name

    @classmethod
    def from_config(cls, cfg, name: str = "function") -> FunctionReward:
        return cls(cfg.function, name=name)

    def score(self, items: list[ScoreRequest]) -> list[Score | None]:
        if not items:
            return []
        t0 = time.perf_counter()
        rewards = list(
            self.fn(
                [i.prompt for i in items],
                [i.completion for i in items],
                [dict(i.metadata) for i in items],
            )
        )
        latency = time.perf_counter() - t0
        if len(rewards) != len(items):
            raise InvalidInput(
                "reward.function", f"returned {len(rewards)} rewards for {len(items)} items"
            )
        out: list[Score | None] = []
        for i, r in enumerate(rewards):
            if isinstance(r, bool) or not isinstance(r, numbers.Real) or not math.isfinite(r):
                raise InvalidInput("reward.function", f"reward {i} is {r!r}, not a finite number")
            out.append(
                Score(
                    float(r), [RewardPart(self.name, float(r))], source=self.name, latency_s=latency
                )
            )
        return out
