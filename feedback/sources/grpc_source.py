"""`reward.kind: grpc`: a reward service that implements `FeedbackService.Score`.

The gRPC twin of the HTTP contract: `Score(ScoreRequest{items}) -> ScoreResponse{rewards}`,
one reward per item in order. Same knobs as HTTP: batches of `reward.max_batch`, at most
`reward.max_concurrency` calls in flight, a deadline of `reward.timeout_s` on each, retries
with backoff on UNAVAILABLE / DEADLINE_EXCEEDED, and `reward.headers` sent as metadata (an
`Authorization: Bearer ...` header works as is). `grpcs://host:port` uses TLS.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from rewardloop.errors import RewardServiceError, Unavailable
from rewardloop.pb import feedback_pb2, feedback_pb2_grpc
from rewardloop.scoring import Score, ScoreRequest
from rewardloop.trajectory import RewardPart

from .base import RewardSource
from .http_source import as_reward
from .transport import call_budget_s, call_grpc, grpc_metadata, open_channel


class GrpcReward(RewardSource):
    """Scores by calling FeedbackService.Score on a remote service."""

    kind = "grpc"

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
        name: str = "grpc",
    ):
        self.url = url
        self.timeout_s = timeout_s
        self.max_batch = max_batch
        self.retries = retries
        self.max_concurrency = max_concurrency
        self.name = name
        self.metadata = grpc_metadata(headers or {})
        self.channel = open_channel(url, ca_cert)
        self.stub = feedback_pb2_grpc.FeedbackServiceStub(self.channel)
        self.pool = ThreadPoolExecutor(
            max_workers=max_concurrency, thread_name_prefix="grpc-reward"
        )

    @classmethod
    def from_config(cls, cfg, name: str = "grpc") -> GrpcReward:
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

    def _call(self, chunk: list[ScoreRequest]) -> list[float]:
        request = feedback_pb2.ScoreRequest(
            items=[
                feedback_pb2.ScoreItem(
                    id=it.id, prompt=it.prompt, completion=it.completion, metadata=it.metadata
                )
                for it in chunk
            ]
        )
        where = f"reward service {self.url}"
        answer = call_grpc(
            self.stub.Score,
            request,
            timeout_s=self.timeout_s,
            retries=self.retries,
            metadata=self.metadata,
            what=where,
        )
        if len(answer.rewards) != len(chunk):
            raise RewardServiceError(
                f"{where}: answer has {len(answer.rewards)} rewards for {len(chunk)} items (must be one per item, in order)"
            )
        return [as_reward(r, f"{where}: rewards[{i}]") for i, r in enumerate(answer.rewards)]

    def score(self, items: list[ScoreRequest]) -> list[Score | None]:
        if not items:
            return []
        t0 = time.perf_counter()
        chunks = [items[i : i + self.max_batch] for i in range(0, len(items), self.max_batch)]
        futures = [self.pool.submit(self._call, c) for c in chunks]
        waves = -(-len(chunks) // self.max_concurrency)
        deadline = t0 + waves * call_budget_s(self.timeout_s, self.retries)
        out: list[Score | None] = []
        for fut in futures:
            try:
                rewards = fut.result(max(0.0, deadline - time.perf_counter()))
            except TimeoutError:
                for f in futures:
                    f.cancel()
                raise Unavailable(f"reward service {self.url}: no result in time") from None
            latency = time.perf_counter() - t0
            out.extend(
                Score(r, [RewardPart(self.name, r)], source=self.name, latency_s=latency)
                for r in rewards
            )
        return out

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.channel.close()
