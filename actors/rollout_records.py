"""What a rollout worker keeps per group while its rewards arrive, and what it counts.

`PendingGroup` holds a generated group until every member has a reward (delayed sources answer
later); `is_finite_score` is the check ingest would apply, done here so a NaN never travels;
`new_counters` is the worker's counter set (its `stats()`, summed into summary.json).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from rewardloop.scoring import Score
from rewardloop.trajectory import Trajectory


@dataclass
class PendingGroup:
    members: list[Trajectory]
    waiting: set[str]
    created: float = field(default_factory=time.monotonic)
    non_finite: int = 0
    """Members dropped for a NaN or inf reward."""


def is_finite_score(score: Score) -> bool:
    """The reward and every named part are finite numbers (what the learner's ingest admits)."""
    try:
        values = [float(score.reward), *(float(p.value) for p in score.parts)]
    except (TypeError, ValueError):
        return False
    return all(math.isfinite(v) for v in values)


def new_counters() -> dict:
    """A fresh set of the worker's counters (seconds as floats)."""
    return {
        "generations": 0,
        "groups": 0,
        "trajectories": 0,
        "tokens": 0,
        "sent": 0,
        "accepted": 0,
        "duplicate": 0,
        "rejected": 0,
        "non_finite_rewards": 0,
        "reward_failed": 0,
        "groups_dropped": 0,
        "siblings_dropped": 0,
        "weight_swaps": 0,
        "waited_for_version_s": 0.0,
        "generate_s": 0.0,
        "reward_s": 0.0,
        "send_s": 0.0,
        "waited_for_ratings_s": 0.0,
        "waited_for_credits_s": 0.0,
    }
