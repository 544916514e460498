"""Turn untrusted request bytes into checked values, or an `InvalidInput` naming the field.

The gateway's HTTP and gRPC faces and the score server read every request through here, so
malformed bytes meet one set of rules instead of surfacing as a 500 / INTERNAL from deep
inside the JSON decoder, SQLite or protobuf:

- `parse_json_object(raw)`: a JSON object at most `MAX_JSON_DEPTH` deep, whose strings (keys
  included) are valid Unicode (no lone surrogates: SQLite and protobuf cannot store them) and
  whose integers have at most `MAX_INT_DIGITS` digits; the error names the path, e.g.
  `items[0].expires_at`.
- `token_bytes(token)`: a token from a header or cookie as bytes for a constant-time compare,
  whatever characters a client put there.
- `ServerLog(count)`: aiohttp's server logger, so that requests refused by its HTTP parser
  (before any route or middleware runs) are counted too, and any 500 it makes is `internal`.
- `add_checked_service(...)`: registers a protobuf service whose request deserializers never
  raise; a message that does not decode reaches the servicer's `on_bad` as a `BadMessage`, so
  it is authorized, counted and answered INVALID_ARGUMENT instead of gRPC's INTERNAL.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable

import grpc
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web import RequestPayloadError
from google.protobuf.message import DecodeError

from rewardloop.errors import InvalidInput

MAX_JSON_DEPTH = 32
MAX_INT_DIGITS = 20


class _LongInt(str):
    """An integer literal too long to be any field's value; reported with its path."""


def _parse_int(text: str) -> int | _LongInt:
    return _LongInt(text) if len(text.lstrip("-")) > MAX_INT_DIGITS else int(text)


def _path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(path or "body", "contains a lone surrogate (\\ud800-\\udfff)") from None


def parse_json_object(raw: bytes) -> dict:
    """`raw` (empty = `{}`) as a checked JSON object, else InvalidInput naming the path."""
    try:
        body = json.loads(raw or b"{}", parse_int=_parse_int)
    except RecursionError:
        raise InvalidInput("body", f"is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput("body", f"is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidInput("body", "must be a JSON object")
    stack: list[tuple[object, str, int]] = [(body, "", 1)]
    while stack:  # iterative, so no depth of nesting can overflow the Python stack
        value, path, depth = stack.pop()
        if isinstance(value, _LongInt):
            raise InvalidInput(path, f"is an integer of {len(value)} digits (out of range)")
        if isinstance(value, str):
            _check_text(value, path)
        elif isinstance(value, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                raise InvalidInput(path, f"is nested deeper than {MAX_JSON_DEPTH} levels")
            pairs = value.items() if isinstance(value, dict) else enumerate(value)
            for key, child in pairs:
                if isinstance(key, str):
                    _check_text(key, _path(path, "<key>"))
                stack.append((child, _path(path, key), depth + 1))
    return body


def token_bytes(token: str) -> bytes:
    """A token as bytes; surrogates (undecodable header bytes) pass through, never raise."""
    return token.encode("utf-8", "surrogatepass")


class ServerLog:
    """aiohttp's server log, counting what only it sees: a request its HTTP parser refused
    (a 400 before any route runs: bad framing, bytes that are not HTTP) as `invalid`, logged at
    debug, and anything else it reports (a 500 outside our middleware) as `internal`."""

    def __init__(self, count: Callable[[BaseException], None]):
        self.count = count
        self.log = logging.getLogger("aiohttp.server")

    def _count(self, exc: BaseException | None) -> bool:
        """Count `exc`; True when it was the client's fault."""
        if isinstance(exc, RequestPayloadError):  # a bad body drained after the answer went
            return True  # out; counted by the route if it read the body, else harmless
        if isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 0) < 500:
            self.count(InvalidInput("request", f"is not valid HTTP: {exc.message}"))
            return True
        self.count(exc or RuntimeError("unknown"))
        return False

    def debug(self, msg, *args, exc_info=None, **kw) -> None:
        if isinstance(exc_info, BaseException) and str(msg).startswith("Error handling"):
            # a first request that is not HTTP at all
            self._count(exc_info)
        self.log.debug(msg, *args, exc_info=exc_info, **kw)

    def exception(self, msg, *args, exc_info=True, **kw) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        if self._count(exc):
            self.log.debug(msg, *args, exc_info=exc_info, **kw)
        else:
            self.log.exception(msg, *args, exc_info=exc_info, **kw)

    def __getattr__(self, name):  # info, warning, isEnabledFor ... as aiohttp's own
        return getattr(self.log, name)


class BadMessage:
    """A request whose bytes are not a valid `type_name` protobuf message."""

    def __init__(self, type_name: str, problem: str):
        self.type_name = type_name
        self.problem = problem

    def error(self) -> InvalidInput:
        return InvalidInput("request", f"is not a valid {self.type_name} message: {self.problem}")


def _lenient(cls) -> Callable[[bytes], object]:
    def deserialize(data: bytes):
        try:
            return cls.FromString(data)
        except DecodeError as exc:
            return BadMessage(cls.DESCRIPTOR.full_name, str(exc) or "cannot decode")

    return deserialize


OnBad = Callable[[BadMessage, grpc.ServicerContext], object]
"""Answers a BadMessage: authorize, count, then abort (INVALID_ARGUMENT)."""


def _guarded(behavior, on_bad: OnBad):
    def call(request, context):
        if isinstance(request, BadMessage):
            return on_bad(request, context)
        return behavior(request, context)

    return call


def add_checked_service(server: grpc.Server, servicer, service, pb2, on_bad: OnBad) -> None:
    """Register `servicer`'s unary methods of `service` (a ServiceDescriptor from `pb2`)."""
    handlers = {}
    for method in service.methods:
        req = getattr(pb2, method.input_type.name)
        resp = getattr(pb2, method.output_type.name)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _guarded(getattr(servicer, method.name), on_bad),
            request_deserializer=_lenient(req),
            response_serializer=resp.SerializeToString,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
