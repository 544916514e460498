"""What every config section shares: the check that names a key, and the lists of allowed values.

Each allowed-values list is defined once here; the sections validate against it and the code
that dispatches on a value (the trainer's algorithm table, the reward-source factory) is tested
to cover exactly these names. An error names the dotted key, what to change and the bad value:
`learner.lr: must be in (0, 1), got -1.0`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rewardloop.errors import ConfigError

ALGORITHMS = ("grpo", "rloo", "reinforce", "ppo")
REWARD_KINDS = ("persona", "function", "http", "grpc", "human")
LR_SCHEDULES = ("constant", "linear", "cosine")
AGGREGATIONS = ("token", "sequence", "constant")
KL_ESTIMATORS = ("k1", "k2", "k3")
IS_LEVELS = ("token", "sequence")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float32", "bfloat16")
WEIGHT_SYNCS = ("object_store", "grpc")
EXPIRY_OUTCOMES = ("drop", "neutral")
UNRATED = ("default", "drop")
FEEDBACK_AGGREGATIONS = ("earliest", "latest", "mean")
PLACEMENT_STRATEGIES = ("PACK", "SPREAD", "STRICT_SPREAD")


class Key(str):
    """A dotted config key that remembers the value it names, so errors can quote it."""

    value: Any

    def __new__(cls, text: str, value: Any = None) -> Key:
        key = super().__new__(cls, text)
        key.value = value
        return key


_MISSING = object()


def _require(ok: bool, key: str, message: str, value: Any = _MISSING) -> None:
    """Raise ConfigError("<key>: <message>, got <value>") unless `ok`."""
    if ok:
        return
    if value is _MISSING and isinstance(key, Key):
        value = key.value
    if value is not _MISSING and "got " not in message:
        message = f"{message}, got {value!r}"
    raise ConfigError(f"{key}: {message}")


def one_of(choices: tuple[str, ...]) -> str:
    """The 'use one of ...' part of an error about a value outside `choices`."""
    return f"use one of {', '.join(choices)}"


class _Section:
    """Mixin: `key(name)` gives the dotted key of a field (with its value) for error messages."""

    section: ClassVar[str] = ""

    def key(self, name: str) -> Key:
        text = f"{self.section}.{name}" if self.section else name
        return Key(text, getattr(self, name, None))
