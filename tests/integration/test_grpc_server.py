"""`grpc_util.GrpcServer`, the lifecycle every rewardloop server runs on: real gRPC on port 0."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from feedback_testutil import self_signed_cert
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rewardloop import grpc_util
from rewardloop.errors import Unavailable

SERVICE = "test.Echo"


class Echo:
    """A bytes-in, bytes-out unary method; `hold` makes a call wait until `release` is set."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def register(self, server: grpc.Server) -> None:
        handler = grpc.unary_unary_rpc_method_handler(self.echo)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"Echo": handler}),)
        )

    def echo(self, request: bytes, context) -> bytes:
        if request == b"hold":
            self.entered.set()
            self.release.wait(10.0)
        return b"echo:" + request


def call(channel: grpc.Channel, payload: bytes, timeout_s: float = 5.0) -> bytes:
    return channel.unary_unary(f"/{SERVICE}/Echo")(payload, timeout=timeout_s)


def test_serves_reports_health_and_stops_not_serving_first():
    echo = Echo()
    server = grpc_util.GrpcServer([echo.register], health_names=[SERVICE], name="echo")
    address = server.start()
    assert address == server.address and server.port > 0 and server.started
    with grpc_util.new_channel(address) as channel:
        assert call(channel, b"hi") == b"echo:hi"
    assert grpc_util.check_health(address) == "SERVING"
    assert grpc_util.check_health(address, SERVICE) == "SERVING"
    seen_while_draining: list[str] = []

    def drain() -> None:  # runs after NOT_SERVING, before the server stops taking calls
        seen_while_draining.append(grpc_util.check_health(address, SERVICE))

    server.stop(grace_s=0.5, drain=drain)
    assert seen_while_draining == ["NOT_SERVING"] and not server.started
    with pytest.raises(Unavailable):
        grpc_util.check_health(address, timeout_s=1.0)
    server.stop()  # a second stop is a no-op


def test_restart_binds_the_same_port_and_double_start_is_refused():
    echo = Echo()
    server = grpc_util.GrpcServer([echo.register])
    first = server.start()
    with pytest.raises(RuntimeError, match="already started"):
        server.start()
    server.stop(grace_s=0)
    assert server.start() == first  # the port picked the first time is kept
    try:
        with grpc_util.new_channel(first) as channel:
            assert call(channel, b"again") == b"echo:again"
    finally:
        server.stop(grace_s=0)


def test_a_taken_port_raises_unavailable_naming_the_key():
    holder = grpc_util.GrpcServer([Echo().register])
    holder.start()
    try:
        clash = grpc_util.GrpcServer([Echo().register], port=holder.port, what="learner.port")
        with pytest.raises(Unavailable, match=f"learner.port: cannot bind 127.0.0.1:{holder.port}"):
            clash.start()
        assert not clash.started
    finally:
        holder.stop(grace_s=0)


def test_stop_is_bounded_by_the_grace_when_a_call_hangs():
    echo = Echo()
    server = grpc_util.GrpcServer([echo.register])
    address = server.start()
    errors: list[grpc.StatusCode] = []
    channel = grpc_util.new_channel(address)

    def hung_call() -> None:
        try:
            call(channel, b"hold", timeout_s=20.0)
        except grpc.RpcError as exc:
            errors.append(exc.code())

    caller = threading.Thread(target=hung_call)
    caller.start()
    try:
        assert echo.entered.wait(5.0)
        t0 = time.monotonic()
        server.stop(grace_s=0.3)
        assert time.monotonic() - t0 < 2.0  # grace + the 1 s the shutdown wait allows
        caller.join(5.0)
        assert not caller.is_alive()
        assert errors and errors[0] in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
    finally:
        echo.release.set()
        channel.close()


def test_an_in_flight_call_finishes_within_the_grace():
    echo = Echo()
    server = grpc_util.GrpcServer([echo.register])
    address = server.start()
    out: list[bytes] = []
    channel = grpc_util.new_channel(address)
    caller = threading.Thread(target=lambda: out.append(call(channel, b"hold", timeout_s=10.0)))
    caller.start()
    try:
        assert echo.entered.wait(5.0)
        server.stop(grace_s=5.0, drain=echo.release.set)  # the call may finish, then shutdown
        caller.join(5.0)
        assert out == [b"echo:hold"]
    finally:
        echo.release.set()
        channel.close()


def test_tls_with_cert_and_key(tmp_path):
    cert, key = self_signed_cert(tmp_path)
    with pytest.raises(ValueError, match="tls_cert and tls_key"):
        grpc_util.GrpcServer([], tls_cert=cert)
    server = grpc_util.GrpcServer(
        [Echo().register], health_names=[SERVICE], tls_cert=cert, tls_key=key
    )
    address = server.start()
    try:
        assert server.tls
        with open(cert, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        with grpc.secure_channel(address, creds) as channel:
            assert call(channel, b"tls") == b"echo:tls"
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE), timeout=5.0
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with grpc_util.new_channel(address) as plain:  # a plaintext client is not served
            with pytest.raises(grpc.RpcError):
                call(plain, b"plain", timeout_s=2.0)
    finally:
        server.stop(grace_s=0)


def test_calls_past_max_workers_are_refused_at_once_and_health_still_answers():
    echo = Echo()
    entered = threading.Semaphore(0)
    held = echo.echo

    def counting(request: bytes, context) -> bytes:
        if request == b"hold":
            entered.release()
        return held(request, context)

    echo.echo = counting
    server = grpc_util.GrpcServer(
        [echo.register], health_names=[SERVICE], max_workers=2, max_calls_key="test.max_calls"
    )
    address = server.start()
    channel = grpc_util.new_channel(address)
    holders = [channel.unary_unary(f"/{SERVICE}/Echo").future(b"hold", timeout=10.0) for _ in "ab"]
    try:
        for _ in holders:
            assert entered.acquire(timeout=5.0)  # both calls are inside the handler
        t0 = time.perf_counter()
        with pytest.raises(grpc.RpcError) as info:
            call(channel, b"third")
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "test.max_calls" in info.value.details()
        assert time.perf_counter() - t0 < 2.0 and server.busy_refused == 1
        assert grpc_util.check_health(address, SERVICE, timeout_s=1.0) == "SERVING"
        echo.release.set()
        assert [h.result(timeout=5.0) for h in holders] == [b"echo:hold"] * 2
        assert call(channel, b"again") == b"echo:again"  # the slots were given back
    finally:
        echo.release.set()
        channel.close()
        server.stop(grace_s=0)
