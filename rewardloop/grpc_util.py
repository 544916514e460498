"""Shared gRPC plumbing: one server lifecycle, channel/server options, health, error translation.

Every rewardloop server (ingest, weights, feedback gateway, Score server) runs on `GrpcServer`:
bind (port 0 = a free one; TLS when given a certificate; a bearer token on every call but
health with an `auth.ServerSecurity`), `grpc.health.v1` answering SERVING for
"" and each named service, and a graceful stop that reports NOT_SERVING before it stops taking
calls. Clients build their channels here too, so that message-size limits and keepalive
settings agree on both ends, and a `grpc.RpcError` becomes a `rewardloop.errors` class (and
back, `answer_unary` for a servicer's calls) in one way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent import futures

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from rewardloop import auth
from rewardloop.call_limit import HEALTH_THREADS, SHORT_CALLS_QUEUED, CallLimit
from rewardloop.errors import (
    InvalidInput,
    NotFound,
    RewardLoopError,
    Unauthenticated,
    Unavailable,
    grpc_status,
)

MAX_MESSAGE_BYTES = 64 << 20
"""Largest message either side accepts (weight chunks are 1 MiB; trajectory batches far less)."""

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})
"""Status codes after which a client rebuilds its channel and tries again."""


def channel_options(max_message_bytes: int = MAX_MESSAGE_BYTES) -> list[tuple[str, int]]:
    """Client channel options: message limits and keepalive pings that notice a dead peer."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.enable_retries", 0),
    ]


def server_options(
    max_message_bytes: int = MAX_MESSAGE_BYTES, max_receive_bytes: int | None = None
) -> list[tuple[str, int]]:
    """Server options matching `channel_options` (accepts the clients' keepalive pings).

    `max_receive_bytes` (default `max_message_bytes`) caps what a client may send."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_receive_bytes or max_message_bytes),
        ("grpc.so_reuseport", 0),  # a taken port is an error, not a second server sharing it
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_ping_strikes", 0),
    ]


def new_channel(
    target: str, max_message_bytes: int = MAX_MESSAGE_BYTES, *, ca_cert: str = "", token: str = ""
) -> grpc.Channel:
    """A channel to `target` ("host:port") with the shared options: plaintext, or TLS trusting
    `ca_cert` (PEM path); `token` goes as `authorization: Bearer` metadata on every call."""
    return auth.client_channel(target, channel_options(max_message_bytes), ca_cert, token)


def new_server(
    max_workers: int,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    max_receive_bytes: int | None = None,
    thread_name_prefix: str = "grpc",
    interceptors: Iterable[grpc.ServerInterceptor] = (),
    max_queued: int | None = None,
) -> grpc.Server:
    """A sync gRPC server; each call (an open stream for its whole life) holds one of its
    `max_workers` threads. With `max_queued`, at most that many more calls wait for a thread
    and grpc refuses any beyond with RESOURCE_EXHAUSTED (`maximum_concurrent_rpcs`)."""
    pool = futures.ThreadPoolExecutor(
        max_workers=max_workers, thread_name_prefix=thread_name_prefix
    )
    options = server_options(max_message_bytes, max_receive_bytes)
    return grpc.server(
        pool,
        options=options,
        interceptors=list(interceptors) or None,
        maximum_concurrent_rpcs=None if max_queued is None else max_workers + max_queued,
    )


def bind(
    server: grpc.Server,
    host: str,
    port: int,
    credentials: grpc.ServerCredentials | None = None,
    what: str = "port",
) -> int:
    """Bind a port (0 = any free one; TLS with `credentials`) and return it.

    Raises Unavailable naming `what` (the config key of the port) if the address is taken."""
    address = f"{host}:{port}"
    try:
        if credentials is None:
            bound = server.add_insecure_port(address)
        else:
            bound = server.add_secure_port(address, credentials)
    except RuntimeError as exc:  # grpc raises RuntimeError when the address is taken
        raise Unavailable(f"{what}: cannot bind {address} (in use?) ({exc})") from exc
    if bound == 0:
        raise Unavailable(f"{what}: cannot bind {address} (in use?)")
    return bound


def tls_credentials(cert_path: str, key_path: str) -> grpc.ServerCredentials:
    """Server TLS credentials from a PEM certificate chain and its private key."""
    with open(key_path, "rb") as key, open(cert_path, "rb") as cert:
        return grpc.ssl_server_credentials([(key.read(), cert.read())])


Register = Callable[[grpc.Server], None]
"""Adds one service to a server, e.g. `lambda s: add_FooServicer_to_server(servicer, s)`."""


class GrpcServer:
    """One gRPC server's lifecycle: bind, health, serve, stop gracefully.

        server = GrpcServer([lambda s: add_FooServicer_to_server(FooServicer(), s)],
                            health_names=["pkg.Foo"], port=0)
        server.start()                   # -> "127.0.0.1:54321" (the bound address)
        server.stop(grace_s=2.0)         # NOT_SERVING first, then a graceful stop

    `services` register the servicers; `grpc.health.v1` is always registered and answers
    SERVING for "" and each of `health_names` while the server runs. `tls_cert` + `tls_key`
    (PEM paths) serve TLS. `security` (an `auth.ServerSecurity`) adds a bearer token that every
    call but health must carry (refusals counted in `unauthenticated`), its TLS files, and the
    check at `start()` that a non-loopback host has a token. `max_workers` calls of the
    services (open streams included) run at once, each on a thread; more wait for one. Given
    `max_calls_key` (the config key that sets `max_workers`, for servers of long-lived
    streams), the next call is instead refused at once with RESOURCE_EXHAUSTED naming the key
    (counted in `busy_refused`), and health checks run on `call_limit.HEALTH_THREADS` threads
    of their own, so they answer while every call is taken (see `rewardloop/call_limit.py`).
    `max_message_bytes` caps messages both ways unless `max_receive_bytes` sets a smaller cap
    on what clients send. `what` names the port in the Unavailable raised when the address is
    taken. After `stop()` a new `start()` builds a fresh server on the same port (the one bound
    first, when it was 0).
    """

    def __init__(
        self,
        services: Iterable[Register],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_workers: int = 16,
        health_names: Iterable[str] = (),
        tls_cert: str = "",
        tls_key: str = "",
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        max_receive_bytes: int | None = None,
        name: str = "grpc",
        what: str = "port",
        security: auth.ServerSecurity | None = None,
        max_calls_key: str = "",
    ):
        if security is not None:  # token, TLS and the non-loopback rule in one object
            tls_cert, tls_key = tls_cert or security.tls_cert, tls_key or security.tls_key
        if bool(tls_cert) != bool(tls_key):
            raise ValueError("tls_cert and tls_key: give both or neither")
        self._services = list(services)
        self.host, self.port = host, port
        self.tls = bool(tls_cert)
        self._tls_paths = (tls_cert, tls_key)
        self._max_workers = max_workers
        self._limit = CallLimit(max_workers, max_calls_key) if max_calls_key else None
        self._health_names = list(health_names)
        self._message_bytes = (max_message_bytes, max_receive_bytes)
        self._name, self._what = name, what
        self._security = security
        self._auth = (
            auth.TokenInterceptor(security.token, security.section)
            if security is not None and security.token
            else None
        )
        self._server: grpc.Server | None = None
        self._health: health.HealthServicer | None = None

    @property
    def address(self) -> str:
        """ "host:port" (the bound port once started)."""
        return f"{self.host}:{self.port}"

    @property
    def target(self) -> str:
        """ "grpcs://host:port" with TLS, else "grpc://host:port" (what reward.url takes)."""
        return f"{'grpcs' if self.tls else 'grpc'}://{self.address}"

    @property
    def unauthenticated(self) -> int:
        """Calls refused for a missing or wrong bearer token (0 without a token)."""
        return self._auth.denied if self._auth is not None else 0

    @property
    def busy_refused(self) -> int:
        """Calls refused with RESOURCE_EXHAUSTED because `max_workers` calls were open."""
        return self._limit.refused if self._limit is not None else 0

    @property
    def started(self) -> bool:
        return self._server is not None

    def start(self) -> str:
        """Bind, register health (SERVING) and serve; returns the bound address."""
        if self._server is not None:
            raise RuntimeError(f"{self._name} gRPC server already started")
        if self._security is not None:
            self._security.check_bind(self.host)
        limit = [self._limit] if self._limit is not None else []
        server = new_server(
            self._max_workers + (HEALTH_THREADS if limit else 0),
            *self._message_bytes,
            thread_name_prefix=self._name,
            # The limit is outermost: it must see (and free) every call it admits, including
            # the token check's refusals; inside it, those leaked a slot each, for good.
            interceptors=[*limit, *([self._auth] if self._auth is not None else ())],
            max_queued=SHORT_CALLS_QUEUED if limit else None,
        )
        for register in self._services:
            register(server)
        self._health = add_health(server, self._health_names)
        creds = tls_credentials(*self._tls_paths) if self.tls else None
        self.port = bind(server, self.host, self.port, creds, self._what)
        server.start()
        self._server = server
        return self.address

    def set_not_serving(self) -> None:
        """Report NOT_SERVING on every health name (load balancers stop sending new calls)."""
        if self._health is not None:
            set_not_serving(self._health)

    def stop(self, grace_s: float = 2.0, drain: Callable[[], None] | None = None) -> None:
        """NOT_SERVING, then `drain()` (end your open streams), then stop within `grace_s`.

        New calls are refused at once; calls in flight get `grace_s` to finish, then are
        cancelled. A no-op when not started."""
        if self._server is None:
            return
        self.set_not_serving()
        if drain is not None:
            drain()
        server, self._server = self._server, None
        server.stop(grace_s).wait(grace_s + 1.0)


def add_health(server: grpc.Server, service_names: Iterable[str]) -> health.HealthServicer:
    """Register grpc.health.v1 on `server`, reporting SERVING for "" and each service name."""
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    for name in ("", *service_names):
        servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return servicer


def set_not_serving(servicer: health.HealthServicer) -> None:
    """Flip every registered service to NOT_SERVING (call before a graceful stop)."""
    servicer.enter_graceful_shutdown()


def check_health(target: str, service: str = "", timeout_s: float = 2.0) -> str:
    """Ask a server's health service; returns the status name, e.g. "SERVING"."""
    channel = new_channel(target)
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    except grpc.RpcError as exc:
        raise error_from_rpc(exc, f"health check of {target}") from exc
    finally:
        channel.close()


class BadRequest:
    """Request bytes that are not a valid message: what `lenient_deserializer` hands the handler
    instead of letting grpc answer INTERNAL ("Exception deserializing request!", uncounted)."""

    def __init__(self, type_name: str, problem: str):
        self.type_name, self.problem = type_name, problem

    @property
    def details(self) -> str:
        """The INVALID_ARGUMENT details: names the field (`request`) and what is wrong."""
        return f"request: is not a valid {self.type_name} message: {self.problem}"


def lenient_deserializer(cls) -> Callable[[bytes], object]:
    """`cls.FromString`, but undecodable bytes become a `BadRequest` the handler can count and
    answer with INVALID_ARGUMENT (a streaming handler sees it in its request iterator)."""

    def deserialize(data: bytes):
        try:
            return cls.FromString(data)
        except DecodeError as exc:
            return BadRequest(cls.DESCRIPTOR.full_name, str(exc) or "cannot decode")

    return deserialize


def abort_with(context: grpc.ServicerContext, exc: BaseException) -> None:
    """Abort the current RPC with the status code `rewardloop.errors` assigns to `exc`."""
    context.abort(grpc_status(exc), str(exc))


def answer_unary(
    context: grpc.ServicerContext,
    fn: Callable[[], object],
    *,
    log,
    what: str,
    count: Callable[[BaseException], None] | None = None,
):
    """`fn()`, the answer of a unary call. A RewardLoopError aborts with its status code and
    message; anything else is a bug: logged (`what`) and answered INTERNAL naming only its type,
    and the server lives on. `count` sees every error first."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - a bug must not take the server down
        if count is not None:
            count(exc)
        if isinstance(exc, RewardLoopError):
            abort_with(context, exc)
        log.exception(what)
        context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}")


def error_from_rpc(exc: grpc.RpcError, what: str = "rpc") -> RewardLoopError:
    """Translate a grpc.RpcError into the rewardloop error a caller can act on."""
    code = exc.code() if hasattr(exc, "code") else None
    details = (exc.details() if hasattr(exc, "details") else None) or str(code)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        field, _, problem = details.partition(": ")
        return InvalidInput(field, problem) if problem else InvalidInput(what, details)
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(f"{what}: {details}")
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return Unauthenticated(f"{what}: {details}")
    if code in RETRYABLE or code == grpc.StatusCode.DEADLINE_EXCEEDED:
        name = code.name if code is not None else "UNKNOWN"
        return Unavailable(f"{what}: {name} ({details})")
    name = code.name if code is not None else "UNKNOWN"
    return RewardLoopError(f"{what}: {name} ({details})")


def is_retryable(exc: grpc.RpcError) -> bool:
    """True when a fresh channel may help (the peer went away or was restarting)."""
    return hasattr(exc, "code") and exc.code() in RETRYABLE


def backoff_s(attempt: int, base_s: float = 0.1, cap_s: float = 2.0) -> float:
    """Exponential backoff for retry `attempt` (0-based)."""
    return min(cap_s, base_s * (2**attempt))


def sleep_backoff(attempt: int) -> None:
    time.sleep(backoff_s(attempt))
