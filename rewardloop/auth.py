"""Bearer tokens and TLS for rewardloop's gRPC endpoints: one server check, one client hook.

- `resolve_token(value, key)`: `env:NAME` reads the token from the environment, anything else
  is the token itself (the form every `*.token` config key takes).
- `ServerSecurity`: what a `grpc_util.GrpcServer` needs to serve securely: the bearer token,
  the TLS certificate and key, and `allow_insecure`. `check_bind(host)` refuses to bind a
  non-loopback address without a token unless `allow_insecure` is set.
- `TokenInterceptor`: the server-side check. A call without `authorization: Bearer <token>`
  metadata is answered UNAUTHENTICATED and counted (`denied`); `grpc.health.v1` needs no token.
- `client_channel(target, options, ca_cert, token)`: TLS when `ca_cert` (a PEM bundle the
  server's certificate chains to) is given, and the token sent as metadata on every call.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import threading
from collections import namedtuple
from dataclasses import dataclass

import grpc

from rewardloop.errors import ConfigError, InvalidInput

HEALTH_PREFIX = "/grpc.health.v1.Health/"
"""Methods under this prefix are answered without a token (probes carry none)."""

LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost"})


def resolve_token(token: str, key: str = "token") -> str:
    """`env:NAME` reads the token from the environment; anything else is the token itself.

    Raises InvalidInput naming `key` (the config key) when the variable is empty or unset."""
    if token.startswith("env:"):
        value = os.environ.get(token[4:], "")
        if not value:
            raise InvalidInput(key, f"environment variable {token[4:]} is empty or unset")
        return value
    return token


def bearer(value: str | bytes | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` value, else None."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if value and value[:7].lower() == "bearer ":
        return value[7:].strip() or None
    return None


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost (only this machine can connect)."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerSecurity:
    """Token and TLS settings of one server; `section` names its config keys in errors."""

    token: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    allow_insecure: bool = False
    section: str = "learner"

    @classmethod
    def from_config(cls, section_cfg) -> ServerSecurity:
        """From a config section with token, tls_cert, tls_key, allow_insecure (token resolved)."""
        name = section_cfg.section
        return cls(
            token=resolve_token(section_cfg.token, f"{name}.token"),
            tls_cert=section_cfg.tls_cert,
            tls_key=section_cfg.tls_key,
            allow_insecure=section_cfg.allow_insecure,
            section=name,
        )

    def check_bind(self, host: str) -> None:
        """Refuse a non-loopback `host` without a token, unless `allow_insecure`."""
        if self.token or self.allow_insecure or is_loopback(host):
            return
        s = self.section
        raise ConfigError(
            f"{s}.host={host} is reachable from other machines but {s}.token is empty: set "
            f"{s}.token (e.g. --set {s}.token=env:REWARDLOOP_{s.upper()}_TOKEN), or "
            f"--set {s}.allow_insecure=true to serve without authentication"
        )


class TokenInterceptor(grpc.ServerInterceptor):
    """Answers UNAUTHENTICATED (and counts it) unless a call carries the bearer token."""

    def __init__(self, token: str, section: str = "learner"):
        if not token:
            raise ValueError("token: must not be empty")
        self._token = token.encode()
        self._section = section
        self._lock = threading.Lock()
        self._denied = 0

    @property
    def denied(self) -> int:
        """Calls refused so far."""
        with self._lock:
            return self._denied

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(HEALTH_PREFIX):
            return handler
        given = None
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                given = bearer(value)
        if given is not None and hmac.compare_digest(given.encode(), self._token):
            return handler
        with self._lock:
            self._denied += 1
        problem = "missing" if given is None else "wrong"
        return _refusal(
            handler,
            f"{problem} bearer token: send `authorization: Bearer <{self._section}.token>`",
        )


def _refusal(handler: grpc.RpcMethodHandler, details: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that aborts with UNAUTHENTICATED."""

    def refuse(_request, context):
        context.abort(grpc.StatusCode.UNAUTHENTICATED, details)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)


class _Details(
    namedtuple(
        "_Details",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    pass


class _BearerMetadata(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds `authorization: Bearer <token>` to every call's metadata."""

    def __init__(self, token: str):
        self._pair = ("authorization", f"Bearer {token}")

    def _details(self, d: grpc.ClientCallDetails) -> _Details:
        metadata = [*(d.metadata or ()), self._pair]
        return _Details(
            d.method, d.timeout, metadata, d.credentials, d.wait_for_ready, d.compression
        )

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)


def client_channel(target: str, options: list, ca_cert: str = "", token: str = "") -> grpc.Channel:
    """A channel to `target`: TLS trusting `ca_cert` (PEM path) when given, else plaintext;
    every call carries `token` as bearer metadata when given."""
    if ca_cert:
        with open(ca_cert, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        channel = grpc.secure_channel(target, creds, options=options)
    else:
        channel = grpc.insecure_channel(target, options=options)
    if token:
        channel = grpc.intercept_channel(channel, _BearerMetadata(token))
    return channel
