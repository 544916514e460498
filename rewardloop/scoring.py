"""The data that passes between a rollout worker and a reward source.

Kept in `rewardloop` (not `feedback/`) because both sides use it: actors/ may not import
feedback/, so a worker sees a reward source only through the `Scorer` protocol below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from rewardloop.trajectory import RewardPart

EXPIRED = "expired"
"""Score.source of a delayed item that expired with the 'drop' outcome: the worker drops it."""


@dataclass
class ScoreRequest:
    id: str
    """The trajectory id; delayed ratings refer back to it."""
    prompt: str
    completion: str
    prompt_key: str = ""
    """A label for the prompt (the reader's name in the news-feed example)."""
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class Score:
    reward: float
    parts: list[RewardPart] = field(default_factory=list)
    source: str = ""
    rater: str = ""
    latency_s: float = 0.0


class Scorer(Protocol):
    """What a rollout worker needs of a reward source (feedback.sources.base.RewardSource implements it)."""

    def score(self, items: list[ScoreRequest]) -> list[Score | None]: ...

    def poll(self, timeout_s: float = 0.0) -> list[tuple[str, Score]]: ...
