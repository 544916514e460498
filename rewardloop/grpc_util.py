"""Shared gRPC plumbing: one place for channel/server options, health, and error translation.

Every rewardloop server (ingest, weights, feedback gateway) and client builds its channels and
servers here so that message-size limits and keepalive settings agree on both ends, every
server answers `grpc.health.v1`, and a `grpc.RpcError` becomes a `rewardloop.errors` class
(and back) in one way.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

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


def server_options(max_message_bytes: int = MAX_MESSAGE_BYTES) -> list[tuple[str, int]]:
    """Server options matching `channel_options` (accepts the clients' keepalive pings)."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_ping_strikes", 0),
    ]


def new_channel(target: str, max_message_bytes: int = MAX_MESSAGE_BYTES) -> grpc.Channel:
    """An insecure channel to `target` ("host:port") with the shared options."""
    return grpc.insecure_channel(target, options=channel_options(max_message_bytes))


def new_server(max_workers: int, max_message_bytes: int = MAX_MESSAGE_BYTES) -> grpc.Server:
    """A sync gRPC server; each open stream holds one of its `max_workers` threads."""
    pool = futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc")
    return grpc.server(pool, options=server_options(max_message_bytes))


def bind(server: grpc.Server, host: str, port: int) -> int:
    """Bind an insecure port (0 = any free one) and return it; Unavailable if binding fails."""
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as exc:  # grpc raises RuntimeError when the address is taken
        raise Unavailable(f"port: cannot bind {host}:{port} ({exc})") from exc
    if bound == 0:
        raise Unavailable(f"port: cannot bind {host}:{port}")
    return bound


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


def abort_with(context: grpc.ServicerContext, exc: BaseException) -> None:
    """Abort the current RPC with the status code `rewardloop.errors` assigns to `exc`."""
    context.abort(grpc_status(exc), str(exc))


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
