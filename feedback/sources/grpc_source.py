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

from rewardloop.errors import Unavailable
from rewardloop.pb import feedback_pb2, feedback_pb2_grpc
from rewardloop.scoring import Score, ScoreRequest

from .remote import RemoteReward, check_reward_list
from .transport import call_budget_s, call_grpc, grpc_metadata, open_channel


class GrpcReward(RemoteReward):
    """Scores by calling FeedbackService.Score on a remote service."""

    kind = "grpc"

    def __init__(self, url: str, **knobs):
        """`knobs`: those of `RemoteReward`."""
        super().__init__(url, **knobs)
        self.metadata = grpc_metadata(self.headers)
        self.channel = open_channel(url, self.ca_cert)
        self.stub = feedback_pb2_grpc.FeedbackServiceStub(self.channel)
        self.pool = ThreadPoolExecutor(
            max_workers=self.max_concurrency, thread_name_prefix="grpc-reward"
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
        return check_reward_list(answer.rewards, len(chunk), where)

    def score(self, items: list[ScoreRequest]) -> list[Score | None]:
        if not items:
            return []
        t0 = time.perf_counter()
        chunks = self._batches(items)
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
            out.extend(self._scores(rewards, time.perf_counter() - t0))
        return out

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.channel.close()
