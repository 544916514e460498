"""`reward.kind: human`: delayed ratings from people, through the feedback gateway.

`score()` publishes the items to the gateway at `reward.url` (http(s)://... for the JSON API,
grpc(s)://... or host:port for gRPC, with `reward.headers` carrying the bearer token) and
answers None for each: the worker keeps those trajectories. `poll()` collects what became of
them and acks it on the next call, so an outcome is handed over at least once and the gateway
stops sending it once acked. What poll() returns, as `Score.source`:

    "human"     a person rated it; reward in [0, 1], `rater` is their pseudonym
    "neutral"   it expired with feedback.expiry_outcome=neutral; reward = neutral_reward
    "blocked"   the content check stopped it before anyone saw it; reward = blocked_reward
    "expired"   (rewardloop.scoring.EXPIRED) it expired with outcome drop: discard it; reward NaN

A gateway that is down or slow makes poll() return [] after one bounded try (counted in
`poll_errors`); the outcomes wait, durable, for the next poll. Ratings of a rater who was
forgotten are deleted at the gateway first, so poll() never returns them afterwards.
"""

from __future__ import annotations

import logging
import math
import time
import uuid

from rewardloop.errors import Unavailable
from rewardloop.feedback.gateway.client import GatewayClient, connect
from rewardloop.feedback.gateway.records import BLOCKED, EXPIRED_KIND, Outcome
from rewardloop.scoring import EXPIRED, Score, ScoreRequest
from rewardloop.trajectory import RewardPart

from .base import RewardSource
from .remote import client_kwargs

log = logging.getLogger(__name__)
HUMAN, NEUTRAL = "human", "neutral"


class HumanReward(RewardSource):
    """Publishes items for people to rate and hands back their ratings as they arrive."""

    kind = "human"

    def __init__(
        self,
        client: GatewayClient,
        *,
        max_batch: int = 64,
        publisher: str = "",
        poll_interval_s: float = 0.1,
        name: str = HUMAN,
    ):
        self.client = client
        self.max_batch = max_batch
        self.publisher = publisher or f"pub-{uuid.uuid4().hex[:16]}"
        self.poll_interval_s = poll_interval_s
        self.name = name
        self.waiting: set[str] = set()
        self._ack: list[str] = []
        self.poll_errors = 0
        self.blocked_on_publish = 0

    @classmethod
    def from_config(cls, cfg, token: str = "", name: str = HUMAN) -> HumanReward:
        """From a RewardConfig; `token` (the gateway's) is sent unless headers carry one."""
        kwargs = client_kwargs(cfg)
        headers = kwargs["headers"]
        if token and not any(k.lower() == "authorization" for k in headers):
            headers["Authorization"] = f"Bearer {token}"
        client = connect(cfg.url, **kwargs)
        return cls(client, max_batch=cfg.max_batch, name=name)

    def score(self, items: list[ScoreRequest]) -> list[Score | None]:
        for i in range(0, len(items), self.max_batch):
            chunk = items[i : i + self.max_batch]
            self.blocked_on_publish += len(self.client.publish(chunk, self.publisher))
            self.waiting.update(it.id for it in chunk)
        return [None] * len(items)

    def poll(self, timeout_s: float = 0.0) -> list[tuple[str, Score]]:
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            try:
                outcomes = self.client.collect(self.publisher, self._ack, retries=0)
            except Unavailable as exc:  # the outcomes stay durable at the gateway
                self.poll_errors += 1
                log.warning("human reward: collect failed, will retry: %s", exc)
                return []
            self._ack = [o.item_id for o in outcomes]
            done = [(o.item_id, self.to_score(o)) for o in outcomes if o.item_id in self.waiting]
            self.waiting.difference_update(item_id for item_id, _ in done)
            remaining = deadline - time.monotonic()
            if done or remaining <= 0:
                return done
            time.sleep(min(self.poll_interval_s, remaining))

    def to_score(self, o: Outcome) -> Score:
        if o.kind == EXPIRED_KIND and o.drop:
            return Score(math.nan, [], source=EXPIRED, latency_s=o.latency_s)
        if o.kind == EXPIRED_KIND:
            return Score(
                o.reward, [RewardPart(NEUTRAL, o.reward)], source=NEUTRAL, latency_s=o.latency_s
            )
        if o.kind == BLOCKED:
            return Score(
                o.reward, [RewardPart(BLOCKED, o.reward)], source=BLOCKED, latency_s=o.latency_s
            )
        return Score(
            o.reward,
            [RewardPart(self.name, o.reward)],
            source=self.name,
            rater=o.rater,
            latency_s=o.latency_s,
        )

    def close(self) -> None:
        self.client.close()
