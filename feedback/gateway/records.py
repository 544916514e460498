"""Plain records the feedback gateway, its store and its clients pass around.

Kept apart from the transports so the store, the gRPC servicer, the HTTP app and the clients
share one vocabulary: an `Item` waits for feedback, an `Outcome` is what became of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

RATED, EXPIRED_KIND, BLOCKED = "rated", "expired", "blocked"
"""Outcome.kind values."""


@dataclass
class Item:
    """A generation waiting for feedback (the trajectory id is its id)."""

    id: str
    prompt: str
    completion: str
    metadata: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    expires_at: float = 0.0

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "prompt": self.prompt,
            "completion": self.completion,
            "metadata": dict(self.metadata),
            "created_at": self.created_at,
            "expires_at": self.expires_at,
        }


@dataclass
class Outcome:
    """What became of a published item: rated, expired (drop or neutral) or blocked."""

    item_id: str
    kind: str
    reward: float
    drop: bool = False
    rater: str = ""
    latency_s: float = 0.0
    reason: str = ""

    def to_json(self) -> dict:
        return {
            "item_id": self.item_id,
            "kind": self.kind,
            "reward": None if math.isnan(self.reward) else self.reward,  # JSON has no NaN
            "drop": self.drop,
            "rater": self.rater,
            "latency_s": self.latency_s,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, d: dict) -> Outcome:
        return cls(
            item_id=str(d["item_id"]),
            kind=str(d["kind"]),
            reward=math.nan if d.get("reward") is None else float(d["reward"]),
            drop=bool(d.get("drop", False)),
            rater=str(d.get("rater", "")),
            latency_s=float(d.get("latency_s", 0.0)),
            reason=str(d.get("reason", "")),
        )


@dataclass
class SubmitResult:
    """stored: the rating is durable; duplicate: the idempotency key was seen before;
    latency_s: publish -> this rating, for a newly stored one (else 0)."""

    stored: bool
    duplicate: bool = False
    reason: str = ""
    latency_s: float = 0.0

    def to_json(self) -> dict:
        return {"stored": self.stored, "duplicate": self.duplicate, "reason": self.reason}
