"""The feedback gateway: `FeedbackService` over gRPC and HTTP/JSON, the rating page, a janitor.

`FeedbackGateway` owns one `FeedbackCore` (store + checks) and serves it two ways: a gRPC
server (TLS when given a certificate) and the aiohttp app of `http_app` (HTTPS likewise). A
janitor thread applies expiry and the retention purge. Everything takes port 0 and binds the
configured host; `start()` returns the addresses, `stop()` shuts down gracefully. It is plain
Python, so cluster/ can run it as a Ray actor unchanged (`ray.remote(FeedbackGateway)`).
"""

from __future__ import annotations

import logging
import threading

import grpc

from rewardloop import grpc_util
from rewardloop.config import FeedbackConfig
from rewardloop.errors import ConfigError, RewardLoopError, Unavailable, grpc_status
from rewardloop.pb import feedback_pb2, feedback_pb2_grpc

from .bad_input import BadMessage, add_checked_service
from .core import FeedbackCore
from .http_app import HttpGateway
from .metrics import GatewayMetrics
from .store import FeedbackStore

log = logging.getLogger(__name__)
SERVICE = feedback_pb2.DESCRIPTOR.services_by_name["FeedbackService"]
SERVICE_NAME = SERVICE.full_name


def bearer(value: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` value, else None."""
    if value and value[:7].lower() == "bearer ":
        return value[7:].strip()
    return None


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
        try:
            md = dict(context.invocation_metadata() or ())
            self.core.authorize(bearer(md.get("authorization")))
            return fn()
        except RewardLoopError as exc:
            self.core.count(exc)
            context.abort(grpc_status(exc), str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug must not take the server down
            self.core.count(exc)
            log.exception("feedback gateway: internal error")
            context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}")

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


class GrpcGateway:
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
        servicer = FeedbackServicer(core)
        self._server = grpc_util.GrpcServer(
            [
                lambda s: add_checked_service(
                    s, servicer, SERVICE, feedback_pb2, servicer.bad_message
                )
            ],
            host=host,
            port=port,
            max_workers=8,
            health_names=[SERVICE_NAME],
            tls_cert=tls_cert,
            tls_key=tls_key,
            max_receive_bytes=core.max_request_bytes,
            name="feedback-grpc",
            what="feedback.grpc_port",
        )

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def target(self) -> str:
        return self._server.target

    def start(self) -> GrpcGateway:
        try:
            self._server.start()
        except Unavailable as exc:  # a taken port is the config's to fix, as for HTTP
            raise ConfigError(str(exc)) from None
        return self

    def stop(self, grace_s: float = 2.0) -> None:
        self._server.stop(grace_s)


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
        self._stop = threading.Event()
        self._janitor: threading.Thread | None = None
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
        self._janitor = threading.Thread(
            target=self._housekeeping, name="feedback-janitor", daemon=True
        )
        self._janitor.start()
        return self.addresses()

    def addresses(self) -> dict:
        assert self.grpc is not None and self.http is not None, "start() first"
        return {
            "http_url": self.http.url,
            "grpc_target": self.grpc.target,
            "rate_url": f"{self.http.url}/rate",
            "metrics_url": self.metrics_url,
        }

    def _housekeeping(self) -> None:
        interval = min(30.0, max(0.2, self.cfg.expiry_s / 4))
        while not self._stop.wait(interval):
            try:
                self.core.maintain()
            except Exception:  # noqa: BLE001 - keep the janitor alive; the next round retries
                log.exception("feedback gateway: housekeeping failed")

    def stats(self) -> dict:
        return self.core.stats()

    def stop(self) -> None:
        self._stop.set()
        self.metrics.stop()
        if self.http is not None:
            self.http.stop()
        if self.grpc is not None:
            self.grpc.stop()
        if self._janitor is not None:
            self._janitor.join(timeout=5.0)
        self.core.close()
