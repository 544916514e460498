"""The RewardSource interface: what every kind of feedback looks like to a rollout worker.

A worker hands a source a batch of `ScoreRequest`s. Immediate sources (personas, functions,
remote services) answer each with a `Score`. Delayed sources (people) answer `None` for items
still waiting and hand the finished ones back later from `poll()`; the worker keeps those
trajectories until then. `expected()` is the noise-free expectation used by evaluation (a
persona's own like probability); sources that cannot say return None.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from rewardloop.scoring import EXPIRED, Score, ScoreRequest

__all__ = ["EXPIRED", "RewardSource", "Score", "ScoreRequest"]


class RewardSource(ABC):
    """Scores completions. Implementations must be safe to call from one worker thread."""

    kind: str = "abstract"

    @abstractmethod
    def score(self, items: list[ScoreRequest]) -> list[Score | None]:
        """One entry per item, in order; None means 'pending, see poll()'."""

    def poll(self, timeout_s: float = 0.0) -> list[tuple[str, Score]]:
        """Scores for items that were pending, as (item id, score); immediate sources have none.

        Waits at most `timeout_s` for the first one. `Score.source` says what happened: the
        source's name (a rating; `rater` is a pseudonym), "neutral" (expired, neutral reward),
        "blocked" (stopped by the content check, blocked reward) or EXPIRED (expired with the
        drop outcome: reward is NaN and the worker must discard the trajectory).
        """
        return []

    def expected(self, items: list[ScoreRequest]) -> list[float] | None:
        """Noise-free expected reward per item, for evaluation; None when not known."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook, deliberately empty
        """Release connections and threads (nothing to release by default)."""
