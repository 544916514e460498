"""WeightService: the learner's latest policy weights for workers outside the Ray cluster.

The learner `publish`es safetensors bytes per version; only the latest is kept. Each subscriber
gets the latest version as soon as it is newer than what the subscriber has, chunked per
weights.proto. Because a subscriber is always sent the newest version when it is ready for the
next one, a slow subscriber skips versions instead of queueing them. Waiting subscribers wake on
publish and also poll on a short timeout, so `stop()` ends every stream promptly.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator

import grpc

from rewardloop import grpc_util
from rewardloop.errors import InvalidInput
from rewardloop.pb import weights_pb2, weights_pb2_grpc
from rewardloop.weight_wire import DEFAULT_CHUNK_BYTES, weight_chunks

SERVICE_NAME = weights_pb2.DESCRIPTOR.services_by_name["WeightService"].full_name
_POLL_S = 0.5


class WeightServer:
    """Serves the latest published weights over gRPC (start/stop in tests, port 0 = free port)."""

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        max_workers: int = 16,
    ):
        if chunk_bytes < 1:
            raise ValueError(f"chunk_bytes: must be >= 1, got {chunk_bytes}")
        self._host, self._port = host, port
        self.chunk_bytes = chunk_bytes
        self._max_workers = max_workers
        self._cond = threading.Condition()
        self._latest: tuple[int, bytes] | None = None
        self._stopping = False
        self._server: grpc.Server | None = None
        self._health = None
        self._counts: Counter[str] = Counter()

    def publish(self, version: int, payload: bytes) -> None:
        """Make `payload` (safetensors bytes) the latest version; versions must increase."""
        if not isinstance(payload, bytes | bytearray | memoryview) or len(payload) == 0:
            raise InvalidInput("payload", "must be non-empty safetensors bytes")
        with self._cond:
            if self._latest is not None and version <= self._latest[0]:
                raise InvalidInput("version", f"{version} is not newer than {self._latest[0]}")
            if version < 0:
                raise InvalidInput("version", f"must be >= 0, got {version}")
            self._latest = (version, bytes(payload))
            self._counts["published"] += 1
            self._cond.notify_all()

    @property
    def latest_version(self) -> int:
        """The newest published version, -1 when nothing was published."""
        with self._cond:
            return self._latest[0] if self._latest is not None else -1

    # ---- lifecycle ---------------------------------------------------------------------

    def start(self) -> int:
        if self._server is not None:
            raise RuntimeError("WeightServer already started")
        self._stopping = False
        server = grpc_util.new_server(self._max_workers)
        weights_pb2_grpc.add_WeightServiceServicer_to_server(_Servicer(self), server)
        self._health = grpc_util.add_health(server, [SERVICE_NAME])
        self._port = grpc_util.bind(server, self._host, self._port)
        server.start()
        self._server = server
        return self._port

    def stop(self, grace_s: float = 2.0) -> None:
        """NOT_SERVING, end every subscription with UNAVAILABLE, shut down within the grace."""
        if self._server is None:
            return
        grpc_util.set_not_serving(self._health)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._server.stop(grace_s).wait(grace_s + 1.0)
        self._server = None

    @property
    def address(self) -> str:
        return f"{self._host}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    def stats(self) -> dict:
        with self._cond:
            out = dict(self._counts)
            out["latest_version"] = self._latest[0] if self._latest is not None else -1
            return out

    # ---- Subscribe ---------------------------------------------------------------------

    def subscribe(
        self, request: weights_pb2.SubscribeRequest, context: grpc.ServicerContext
    ) -> Iterator[weights_pb2.WeightChunk]:
        if request.have_version < -1:
            with self._cond:
                self._counts["invalid_requests"] += 1
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "have_version: must be >= -1")
        have = request.have_version
        with self._cond:
            self._counts["subscribes"] += 1
        while True:
            with self._cond:
                while not self._stopping and (self._latest is None or self._latest[0] <= have):
                    if request.once or not context.is_active():
                        return
                    self._cond.wait(_POLL_S)
                if self._stopping:
                    context.abort(grpc.StatusCode.UNAVAILABLE, "weight server is stopping")
                version, payload = self._latest
            for chunk in weight_chunks(version, payload, self.chunk_bytes):
                if self._stopping:
                    context.abort(grpc.StatusCode.UNAVAILABLE, "weight server is stopping")
                yield chunk
                self._counts["chunks_sent"] += 1
            have = version
            with self._cond:
                self._counts["versions_sent"] += 1
                self._counts["bytes_sent"] += len(payload)
            if request.once:
                return


class _Servicer(weights_pb2_grpc.WeightServiceServicer):
    def __init__(self, server: WeightServer):
        self._server = server

    def Subscribe(self, request, context):  # noqa: N802 (gRPC method name)
        return self._server.subscribe(request, context)
