"""`reward.kind: http`: a reward model or a product's feedback behind an HTTP endpoint.

The contract (feedback/README.md has the long form):

    POST <reward.url>   {"items": [{"id", "prompt", "completion", "metadata": {...}}, ...]}
    200                 {"rewards": [float, ...]}          same length, same order

Items go in batches of `reward.max_batch`, at most `reward.max_concurrency` at once, each
call bounded by `reward.timeout_s` and retried `reward.retries` times with backoff. An answer
that breaks the contract raises `RewardServiceError` saying exactly how.
"""

from __future__ import annotations

import time

from rewardloop.errors import RewardServiceError
from rewardloop.scoring import Score, ScoreRequest

from .remote import RemoteReward, check_reward_list, client_kwargs, item_json
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
    return check_reward_list(rewards, n, where)


class HttpReward(RemoteReward):
    """Scores by POSTing batches to a reward service; see the module docstring for the contract."""

    kind = "http"

    def __init__(self, url: str, **knobs):
        """`knobs`: those of `RemoteReward`."""
        super().__init__(url, **knobs)
        self.client = JsonClient(url, **client_kwargs(self), what="reward service")

    def score(self, items: list[ScoreRequest]) -> list[Score | None]:
        if not items:
            return []
        t0 = time.perf_counter()
        chunks = self._batches(items)
        payloads = [{"items": [item_json(it) for it in chunk]} for chunk in chunks]
        answers = self.client.request_many("POST", "", payloads)
        latency = time.perf_counter() - t0
        out: list[Score | None] = []
        for chunk, answer in zip(chunks, answers, strict=True):
            rewards = check_rewards(answer, len(chunk), f"reward service {self.url}")
            out.extend(self._scores(rewards, latency))
        return out

    def close(self) -> None:
        self.client.close()
