"""`reward.kind: http`: a reward model or a product's feedback behind an HTTP endpoint.

The contract (feedback/README.md has the long form):

    POST <reward.url>   {"items": [{"id", "prompt", "completion", "metadata": {...}}, ...]}
    200                 {"rewards": [float, ...]}          same length, same order

Items go in batches of `reward.max_batch`, at most `reward.max_concurrency` at once, each
call bounded by `reward.timeout_s` and retried `reward.retries` times with backoff. An answer
that breaks the contract raises `RewardServiceError` saying exactly how.
"""

from __future__ import annotations

import math
import time

from rewardloop.errors import RewardServiceError
from rewardloop.scoring import Score, ScoreRequest
from rewardloop.trajectory import RewardPart

from .base import RewardSource
from .transport import JsonClient


def check_rewards(answer: object, n: int, where: str) -> list[float]:
    """The rewards of a contract answer for `n` items, or RewardServiceError naming the problem."""
    if not isinstance(answer, dict) or "rewards" not in answer:
        raise RewardServiceError(
            f"{where}: answer must be a JSON object with a 'rewards' list, got {str(answer)[:120]!r}"
        )
    rewards = answer["rewards"]
    if not isinstance(rewards, list):
        raise RewardServiceError(f"{where}: 'rewards' must be a list, got {type(rewards).__name__}")
    if len(rewards) != n:
        raise RewardServiceError(
            f"{where}: answer has {len(rewards)} rewards for {n} items (must be one per item, in order)"
        )
    return [as_reward(r, f"{where}: rewards[{i}]") for i, r in enumerate(rewards)]


def as_reward(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RewardServiceError(f"{where} is {value!r}, not a number")
    if not math.isfinite(value):
        raise RewardServiceError(f"{where} is {value}, not a finite number")
    return float(value)


class HttpReward(RewardSource):
    """Scores by POSTing batches to a reward service; see the module docstring for the contract."""

    kind = "http"

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
        name: str = "http",
    ):
        self.url = url
        self.max_batch = max_batch
        self.name = name
        self.client = JsonClient(
            url,
            headers=headers,
            timeout_s=timeout_s,
            retries=retries,
            max_concurrency=max_concurrency,
            ca_cert=ca_cert,
            what="reward service",
        )

    @classmethod
    def from_config(cls, cfg, name: str = "http") -> HttpReward:
        return cls(
            cfg.url,
            timeout_s=cfg.timeout_s,
            max_batch=cfg.max_batch,
            retries=cfg.retries,
            max_concurrency=cfg.max_concurrency,
            headers=dict(cfg.headers),
            ca_cert=cfg.ca_cert,
            name=name,
        )

    def score(self, items: list[ScoreRequest]) -> list[Score | None]:
        if not items:
            return []
        t0 = time.perf_counter()
        chunks = [items[i : i + self.max_batch] for i in range(0, len(items), self.max_batch)]
        payloads = [
            {
                "items": [
                    {
                        "id": it.id,
                        "prompt": it.prompt,
                        "completion": it.completion,
                        "metadata": dict(it.metadata),
                    }
                    for it in chunk
                ]
            }
            for chunk in chunks
        ]
        answers = self.client.request_many("POST", "", payloads)
        latency = time.perf_counter() - t0
        out: list[Score | None] = []
        for chunk, answer in zip(chunks, answers, strict=True):
            for r in check_rewards(answer, len(chunk), f"reward service {self.url}"):
                out.append(
                    Score(r, [RewardPart(self.name, r)], source=self.name, latency_s=latency)
                )
        return out

    def close(self) -> None:
        self.client.close()
