"""What the sources that call a remote service share (HTTP and gRPC reward services, and the
client knobs of the human source's gateway): the client settings of a `RewardConfig`, an item
in the JSON contracts, items in batches of `reward.max_batch`, the check that an answer holds
one finite reward per item in order, and one `Score` per reward.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rewardloop.errors import RewardServiceError
from rewardloop.scoring import Score, ScoreRequest
from rewardloop.trajectory import RewardPart

from .base import RewardSource


def client_kwargs(cfg) -> dict:
    """The client knobs of a RewardConfig (or a RemoteReward) as keywords: headers, timeout_s,
    retries, max_concurrency, ca_cert (what `JsonClient`, `gateway.client.connect` and the
    remote sources take)."""
    return {
        "headers": dict(cfg.headers),
        "timeout_s": cfg.timeout_s,
        "retries": cfg.retries,
        "max_concurrency": cfg.max_concurrency,
        "ca_cert": cfg.ca_cert,
    }


def item_json(it: ScoreRequest) -> dict:
    """An item as the JSON contracts send it (a reward service's POST, the gateway's publish)."""
    return {
        "id": it.id,
        "prompt": it.prompt,
        "completion": it.completion,
        "metadata": dict(it.metadata),
    }


def as_reward(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RewardServiceError(f"{where} is {value!r}, not a number")
    if not math.isfinite(value):
        raise RewardServiceError(f"{where} is {value}, not a finite number")
    return float(value)


def check_reward_list(rewards: Sequence, n: int, where: str) -> list[float]:
    """`rewards` as floats when there is one finite number per item, else RewardServiceError."""
    if len(rewards) != n:
        raise RewardServiceError(
            f"{where}: answer has {len(rewards)} rewards for {n} items (must be one per item, in order)"
        )
    return [as_reward(r, f"{where}: rewards[{i}]") for i, r in enumerate(rewards)]


class RemoteReward(RewardSource):
    """Base of the reward-service sources: a subclass sets `kind`, calls this `__init__` and
    opens its client from the knobs it keeps (`client_kwargs(self)`)."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 10.0,
        max_batch: int = 64,
        retries: int = 3,
        max_concurrency: int = 4,
        headers: dict | None = None,
        ca_cert: str = "",
        name: str | None = None,
    ):
        self.url = url
        self.timeout_s, self.retries, self.max_concurrency = timeout_s, retries, max_concurrency
        self.max_batch = max_batch
        self.headers, self.ca_cert = dict(headers or {}), ca_cert
        self.name = self.kind if name is None else name
        """Labels the reward part and `Score.source` (default: the kind)."""

    @classmethod
    def from_config(cls, cfg, name: str | None = None):
        """From a RewardConfig (its url, max_batch and client knobs)."""
        return cls(cfg.url, max_batch=cfg.max_batch, name=name, **client_kwargs(cfg))

    def _batches(self, items: list[ScoreRequest]) -> list[list[ScoreRequest]]:
        return [items[i : i + self.max_batch] for i in range(0, len(items), self.max_batch)]

    def _scores(self, rewards: list[float], latency_s: float) -> list[Score]:
        return [
            Score(r, [RewardPart(self.name, r)], source=self.name, latency_s=latency_s)
            for r in rewards
        ]
