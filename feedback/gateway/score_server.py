"""Put a Python reward function behind gRPC: a `FeedbackService` that answers `Score`.

    server = ScoreServer(my_reward, port=0).start()    # my_reward(prompts, completions, metadata)
    ... reward.kind: grpc, reward.url: server.target ...
    server.stop()

Useful for serving a reward model on its own GPU machine, and it is the real server the
gRPC reward source is tested against. The other FeedbackService calls answer UNIMPLEMENTED.
A missing or wrong token answers UNAUTHENTICATED, bytes that are not a ScoreRequest
INVALID_ARGUMENT, a failing reward function INTERNAL; each is counted in `stats()`.
"""

from __future__ import annotations

import hmac
import math
import threading
from collections import Counter
from collections.abc import Callable

import grpc

from rewardloop.pb import feedback_pb2, feedback_pb2_grpc

from .bad_input import BadMessage, token_bytes
from .grpc_face import FeedbackGrpcServer

RewardFn = Callable[[list[str], list[str], list[dict]], list[float]]


class _ScoreServicer(feedback_pb2_grpc.FeedbackServiceServicer):
    def __init__(self, fn: RewardFn, token: str):
        self.fn = fn
        self.token = token
        self.errors: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _fail(self, context, kind: str, code: grpc.StatusCode, message: str):
        with self._lock:
            self.errors[kind] += 1
        context.abort(code, message)

    def _authorize(self, context) -> None:
        if self.token:
            auth = dict(context.invocation_metadata() or ()).get("authorization", "")
            want = token_bytes(f"Bearer {self.token}")
            if not isinstance(auth, str) or not hmac.compare_digest(token_bytes(auth), want):
                self._fail(
                    context,
                    "unauthenticated",
                    grpc.StatusCode.UNAUTHENTICATED,
                    "a bearer token is required",
                )

    def bad_message(self, bad: BadMessage, context):
        self._authorize(context)
        self._fail(context, "invalid", grpc.StatusCode.INVALID_ARGUMENT, str(bad.error()))

    def Score(self, request, context):
        self._authorize(context)
        items = list(request.items)
        try:
            rewards = [
                float(r)
                for r in self.fn(
                    [i.prompt for i in items],
                    [i.completion for i in items],
                    [dict(i.metadata) for i in items],
                )
            ]
        except Exception as exc:  # noqa: BLE001 - the caller sees the failure, the server lives on
            self._fail(
                context,
                "reward_fn",
                grpc.StatusCode.INTERNAL,
                f"reward function failed: {type(exc).__name__}: {exc}",
            )
        if len(rewards) != len(items) or not all(math.isfinite(r) for r in rewards):
            self._fail(
                context,
                "reward_fn",
                grpc.StatusCode.INTERNAL,
                f"reward function gave {len(rewards)} rewards for {len(items)} items",
            )
        return feedback_pb2.ScoreResponse(rewards=rewards)


class ScoreServer(FeedbackGrpcServer):
    """A gRPC Score server around `fn`; port 0 picks a free port; TLS when cert and key are given."""

    def __init__(
        self,
        fn: RewardFn,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str = "",
        tls_cert: str = "",
        tls_key: str = "",
        max_workers: int = 8,
    ):
        self._servicer = _ScoreServicer(fn, token)
        super().__init__(
            self._servicer,
            host=host,
            port=port,
            max_workers=max_workers,
            tls_cert=tls_cert,
            tls_key=tls_key,
            name="score",
        )

    def stats(self) -> dict:
        """{"request_errors": {kind: count}}: unauthenticated, invalid, reward_fn."""
        with self._servicer._lock:
            return {"request_errors": dict(self._servicer.errors)}

    def stop(self, grace_s: float = 1.0) -> None:
        super().stop(grace_s)
