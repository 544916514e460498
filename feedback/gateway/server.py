"""The feedback gateway: `FeedbackService` over gRPC and HTTP/JSON, the rating page, a janitor.

`FeedbackGateway` owns one `FeedbackCore` (store + checks) and serves it two ways: a gRPC
server (TLS when given a certificate) and the aiohttp app of `http_app` (HTTPS likewise). A
janitor thread applies expiry and the retention purge. Everything takes port 0 and binds the
configured host; `start()` returns the addresses, `stop()` shuts down gracefully. It is plain
Python, so cluster/ can run it as a Ray actor unchanged (`ray.remote(FeedbackGateway)`).
"""

from __future__ import annotations

import logging

import grpc

from rewardloop import grpc_util
from rewardloop.auth import bearer
from rewardloop.config import FeedbackConfig
from rewardloop.errors import ConfigError, Unavailable
from rewardloop.pb import feedback_pb2, feedback_pb2_grpc
from rewardloop.periodic import Periodic

from .bad_input import BadMessage
from .core import FeedbackCore
from .grpc_face import FeedbackGrpcServer
from .http_app import HttpGateway
from .metrics import GatewayMetrics
from .store import FeedbackStore

log = logging.getLogger(__name__)


def _item_pb(it) -> feedback_pb2.FeedbackItem:
    return feedback_pb2.FeedbackItem(
        id=it.id,
        prompt=it.prompt,
        completion=it.completion,
        metadata=it.metadata,
        created_at=it.created_at,
        expires_at=it.expires_at,
    )


class FeedbackServicer(feedback_pb2_grpc.FeedbackServiceServicer):
    """gRPC face of a FeedbackCore: auth from metadata, errors mapped to status codes.

    Each call runs whole (request reading, core call, response building) inside `_run`, so a
    `RewardLoopError` is counted and answered with its code; anything else is a bug: logged,
    counted as `internal`, answered INTERNAL. A request that does not decode arrives as a
    `BadMessage` (see `bad_input.add_checked_service`) and is answered INVALID_ARGUMENT."""

    def __init__(self, core: FeedbackCore):
        self.core = core

    def bad_message(self, bad: BadMessage, context):
        def fail():
            raise bad.error()

        return self._run(context, fail)

    def _run(self, context, fn):
        def call():
            md = dict(context.invocation_metadata() or ())
            self.core.authorize(bearer(md.get("authorization")))
            return fn()

        return grpc_util.answer_unary(
            context, call, log=log, what="feedback gateway: internal error", count=self.core.count
        )

    def Publish(self, request, context):
        return self._run(context, lambda: self._publish(request))

    def _publish(self, request):
        items = [
            {
                "id": it.id,
                "prompt": it.prompt,
                "completion": it.completion,
                "metadata": dict(it.metadata),
                "expires_at": it.expires_at,
            }
            for it in request.items
        ]
        return feedback_pb2.PublishResponse(**self.core.publish(items, request.publisher))

    def ListPending(self, request, context):
        def call():
            items = self.core.pending(int(request.limit), request.rater)
            return feedback_pb2.ListPendingResponse(items=[_item_pb(it) for it in items])

        return self._run(context, call)

    def SubmitRating(self, request, context):
        def call():
            res = self.core.submit(
                request.item_id,
                float(request.value),
                request.rater,
                request.idempotency_key,
                int(request.stars),
            )
            return feedback_pb2.SubmitRatingResponse(stored=res.stored, duplicate=res.duplicate)

        return self._run(context, call)

    def Collect(self, request, context):
        return self._run(context, lambda: self._collect(request))

    def _collect(self, request):
        outs = self.core.collect(request.publisher, list(request.ack_ids), int(request.limit))
        return feedback_pb2.CollectResponse(
            outcomes=[
                feedback_pb2.Outcome(
                    item_id=o.item_id,
                    kind=o.kind,
                    reward=o.reward,
                    drop=o.drop,
                    rater=o.rater,
                    latency_s=o.latency_s,
                    reason=o.reason,
                )
                for o in outs
            ]
        )

    def Score(self, request, context):
        context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "the feedback gateway collects delayed ratings (Publish/Collect); Score is served by reward services",
        )


class GrpcGateway(FeedbackGrpcServer):
    """A gRPC server for a FeedbackCore, with grpc.health.v1; TLS when cert and key are given."""

    def __init__(
        self,
        core: FeedbackCore,
        host: str = "127.0.0.1",
        port: int = 0,
        tls_cert: str = "",
        tls_key: str = "",
    ):
        self.core = core
        super().__init__(
            FeedbackServicer(core),
            host=host,
            port=port,
            max_workers=8,
            tls_cert=tls_cert,
            tls_key=tls_key,
            max_receive_bytes=core.max_request_bytes,
            name="feedback-grpc",
            what="feedback.grpc_port",
        )

    def start(self) -> GrpcGateway:
        try:
            return super().start()
        except Unavailable as exc:  # a taken port is the config's to fix, as for HTTP
            raise ConfigError(str(exc)) from None


class FeedbackGateway:
    """The whole gateway: store, gRPC server, HTTP app and rating page, janitor thread."""

    def __init__(self, cfg: FeedbackConfig | dict, store: FeedbackStore | None = None, clock=None):
        if isinstance(cfg, dict):  # shipped to a Ray actor as a plain dict
            cfg = FeedbackConfig(**cfg)
        self.cfg = cfg
        kwargs = {"clock": clock} if clock else {}
        self.core = FeedbackCore(cfg, store=store, **kwargs)
        self.metrics = GatewayMetrics(self.core, cfg.metrics_host, cfg.metrics_port)
        self.grpc: GrpcGateway | None = None
        self.http: HttpGateway | None = None
        self._janitor: Periodic | None = None
        self.metrics_url = ""

    def start(self) -> dict:
        """Start serving; returns {"http_url", "grpc_target", "rate_url", "metrics_url"}."""
        c = self.cfg
        self.core.maintain()  # expiry and retention apply from the first request on
        self.grpc = GrpcGateway(self.core, c.host, c.grpc_port, c.tls_cert, c.tls_key).start()
        try:
            self.http = HttpGateway(self.core, c.host, c.http_port, c.tls_cert, c.tls_key).start()
            self.metrics_url = self.metrics.start()
        except BaseException:
            if self.http is not None:
                self.http.stop()
            self.grpc.stop(grace_s=0)
            raise
        interval = min(30.0, max(0.2, c.expiry_s / 4))
        self._janitor = Periodic(
            self.core.maintain,
            interval,
            what="feedback gateway: housekeeping",
            log=log,
            name="feedback-janitor",
        ).start()
        return self.addresses()

    def addresses(self) -> dict:
        assert self.grpc is not None and self.http is not None, "start() first"
        return {
            "http_url": self.http.url,
            "grpc_target": self.grpc.target,
            "rate_url": f"{self.http.url}/rate",
            "metrics_url": self.metrics_url,
        }

    def stats(self) -> dict:
        return self.core.stats()

    def stop(self) -> None:
        if self._janitor is not None:
            self._janitor.stop(timeout_s=5.0)
        self.metrics.stop()
        if self.http is not None:
            self.http.stop()
        if self.grpc is not None:
            self.grpc.stop()
        self.core.close()
