"""Put a Python reward function behind gRPC: a `FeedbackService` that answers `Score`.

    server = ScoreServer(my_reward, port=0).start()    # my_reward(prompts, completions, metadata)
    ... reward.kind: grpc, reward.url: server.target ...
    server.stop()

Useful for serving a reward model on its own GPU machine, and it is the real server the
gRPC reward source is tested against. The other FeedbackService calls answer UNIMPLEMENTED.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Callable
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from rewardloop.pb import feedback_pb2, feedback_pb2_grpc

RewardFn = Callable[[list[str], list[str], list[dict]], list[float]]


class _ScoreServicer(feedback_pb2_grpc.FeedbackServiceServicer):
    def __init__(self, fn: RewardFn, token: str):
        self.fn = fn
        self.token = token

    def Score(self, request, context):
        if self.token:
            auth = dict(context.invocation_metadata() or ()).get("authorization", "")
            if not hmac.compare_digest(auth.encode(), f"Bearer {self.token}".encode()):
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "a bearer token is required")
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
            context.abort(
                grpc.StatusCode.INTERNAL, f"reward function failed: {type(exc).__name__}: {exc}"
            )
        if len(rewards) != len(items) or not all(math.isfinite(r) for r in rewards):
            context.abort(
                grpc.StatusCode.INTERNAL,
                f"reward function gave {len(rewards)} rewards for {len(items)} items",
            )
        return feedback_pb2.ScoreResponse(rewards=rewards)


class ScoreServer:
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
        self.host = host
        self.tls = bool(tls_cert)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers))
        feedback_pb2_grpc.add_FeedbackServiceServicer_to_server(
            _ScoreServicer(fn, token), self._server
        )
        self._health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        address = f"{host}:{port}"
        if self.tls:
            with open(tls_key, "rb") as k, open(tls_cert, "rb") as c:
                creds = grpc.ssl_server_credentials([(k.read(), c.read())])
            self.port = self._server.add_secure_port(address, creds)
        else:
            self.port = self._server.add_insecure_port(address)

    @property
    def target(self) -> str:
        return f"{'grpcs' if self.tls else 'grpc'}://{self.host}:{self.port}"

    def start(self) -> ScoreServer:
        self._server.start()
        self._health.set("", health_pb2.HealthCheckResponse.SERVING)
        return self

    def stop(self, grace_s: float = 1.0) -> None:
        self._server.stop(grace_s).wait(grace_s + 1.0)
