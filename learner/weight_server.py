"""WeightService: the learner's latest policy weights for workers outside the Ray cluster.

The learner `publish`es each version (a state dict, or safetensors bytes); only the latest is
kept. Publishing encodes the version once (`weight_wire.encode_version`: the digest and the
serialized WeightChunk messages), and every subscriber is streamed those same bytes: the
Subscribe handler is registered with an identity response serializer, so a subscriber costs
the server no hashing, slicing or protobuf work, only gRPC's own copy into its send buffer.

Each subscriber gets the latest version as soon as it is newer than what the subscriber has,
chunked per weights.proto. Because a subscriber is always sent the newest version when it is
ready for the next one, a slow subscriber skips versions instead of queueing them. A `once`
request with `wait_ms` is a long-poll: it waits (woken by publish) for a newer version. Waiting
subscribers also wake on a short timeout, so `stop()` ends every stream promptly.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping

import grpc
import torch

from rewardloop import grpc_util
from rewardloop.auth import ServerSecurity
from rewardloop.errors import InvalidInput
from rewardloop.pb import weights_pb2
from rewardloop.weight_wire import (
    DEFAULT_CHUNK_BYTES,
    SERVICE_NAME,
    EncodedVersion,
    encode_version,
)

_POLL_S = 0.5


class WeightServer:
    """Serves the latest published weights over gRPC (start/stop in tests, port 0 = free port).

    `security` (token, TLS, the non-loopback rule) is `GrpcServer`'s; refusals count in
    `stats()["unauthenticated"]`. At most `max_streams` Subscribe calls (long-polls included)
    are served at once; the next is refused with RESOURCE_EXHAUSTED (`stats()["refused_busy"]`)."""

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        max_streams: int = 128,
        security: ServerSecurity | None = None,
    ):
        if chunk_bytes < 1:
            raise ValueError(f"chunk_bytes: must be >= 1, got {chunk_bytes}")
        self.chunk_bytes = chunk_bytes
        self._cond = threading.Condition()
        self._latest: EncodedVersion | None = None
        self._stopping = False
        handlers = {
            "Subscribe": grpc.unary_stream_rpc_method_handler(
                self.subscribe,
                request_deserializer=grpc_util.lenient_deserializer(weights_pb2.SubscribeRequest),
                response_serializer=None,  # the handler yields pre-serialized WeightChunks
            )
        }

        def register(server: grpc.Server) -> None:
            server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),)
            )
            server.add_registered_method_handlers(SERVICE_NAME, handlers)

        self._grpc = grpc_util.GrpcServer(
            [register],
            host=host,
            port=port,
            max_workers=max_streams,
            max_calls_key="learner.max_streams",
            health_names=[SERVICE_NAME],
            name="weights",
            what="weight server port",
            security=security,
        )
        self._counts: Counter[str] = Counter()
        self.last_encode_s = 0.0

    def publish(
        self, version: int, weights: bytes | bytearray | memoryview | Mapping[str, torch.Tensor]
    ) -> None:
        """Make `weights` the latest version; versions must increase.

        `weights` is safetensors bytes or a state dict (laid out as safetensors straight from
        the tensors, one copy). Either is encoded here, once, for every subscriber."""
        if version < 0:
            raise InvalidInput("version", f"must be >= 0, got {version}")
        self._check_newer(version)  # before the encoding work, and again after it
        t0 = time.perf_counter()
        encoded = encode_version(version, weights, self.chunk_bytes)
        with self._cond:
            self._check_newer(version)
            self._latest = encoded
            self.last_encode_s = time.perf_counter() - t0
            self._counts["published"] += 1
            self._cond.notify_all()

    def _check_newer(self, version: int) -> None:
        with self._cond:
            if self._latest is not None and version <= self._latest.version:
                raise InvalidInput("version", f"{version} is not newer than {self._latest.version}")

    @property
    def latest_version(self) -> int:
        """The newest published version, -1 when nothing was published."""
        with self._cond:
            return self._latest.version if self._latest is not None else -1

    # ---- lifecycle ---------------------------------------------------------------------

    def start(self) -> int:
        """Bind and serve; returns the bound port."""
        if self._grpc.started:
            raise RuntimeError("WeightServer already started")
        self._stopping = False
        self._grpc.start()
        return self._grpc.port

    def stop(self, grace_s: float = 2.0) -> None:
        """NOT_SERVING, end every subscription with UNAVAILABLE, shut down within the grace."""
        self._grpc.stop(grace_s, drain=self._end_subscriptions)

    def _end_subscriptions(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    @property
    def address(self) -> str:
        return self._grpc.address

    @property
    def port(self) -> int:
        return self._grpc.port

    def stats(self) -> dict:
        with self._cond:
            out = dict(self._counts)
            out["latest_version"] = self._latest.version if self._latest is not None else -1
        out["unauthenticated"] = self._grpc.unauthenticated
        out["refused_busy"] = self._grpc.busy_refused
        return out

    # ---- Subscribe ---------------------------------------------------------------------

    def subscribe(
        self, request: weights_pb2.SubscribeRequest, context: grpc.ServicerContext
    ) -> Iterator[bytes]:
        """Yield serialized WeightChunk messages in the order weights.proto defines."""
        if isinstance(request, grpc_util.BadRequest):  # bytes that are no SubscribeRequest
            with self._cond:
                self._counts["invalid_requests"] += 1
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.details)
        if request.have_version < -1:
            with self._cond:
                self._counts["invalid_requests"] += 1
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "have_version: must be >= -1")
        have = request.have_version
        wait_until = time.monotonic() + request.wait_ms / 1000.0
        with self._cond:
            self._counts["subscribes"] += 1
        while True:
            with self._cond:
                while not self._stopping and (self._latest is None or self._latest.version <= have):
                    left = wait_until - time.monotonic()
                    if (request.once and left <= 0) or not context.is_active():
                        return
                    self._cond.wait(min(_POLL_S, left) if request.once else _POLL_S)
                if self._stopping:
                    context.abort(grpc.StatusCode.UNAVAILABLE, "weight server is stopping")
                latest = self._latest
            last = len(latest.messages) - 1
            for i, message in enumerate(latest.messages):
                if self._stopping:
                    context.abort(grpc.StatusCode.UNAVAILABLE, "weight server is stopping")
                with self._cond:  # counted when handed to gRPC, so a client that has every
                    self._counts["chunks_sent"] += 1  # chunk never sees a lower count
                    if i == last:
                        self._counts["versions_sent"] += 1
                        self._counts["bytes_sent"] += latest.total_bytes
                yield message
            have = latest.version
            if request.once:
                return
