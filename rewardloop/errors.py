"""One error hierarchy for rewardloop, mapped to gRPC status codes and HTTP statuses here only.

Raise the most specific class; servers translate with `grpc_status` / `http_status` so a client
always sees a message that names the field at fault.
"""

from __future__ import annotations

import grpc


class RewardLoopError(Exception):
    """Base class: anything rewardloop raises on purpose."""

    grpc_code = grpc.StatusCode.INTERNAL
    http_status = 500


class ConfigError(RewardLoopError, ValueError):
    """A config key has a bad value; the message names the key and how to fix it."""

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400


class InvalidInput(RewardLoopError, ValueError):
    """A request or message is malformed; `field` names the offending field."""

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class NotFound(RewardLoopError, KeyError):
    """An id that the server does not know (unknown feedback item, unknown version)."""

    grpc_code = grpc.StatusCode.NOT_FOUND
    http_status = 404

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "not found"


class Unauthenticated(RewardLoopError):
    """A write call without a valid bearer token."""

    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    http_status = 401


class PayloadTooLarge(InvalidInput):
    """A request over the configured size limit."""

    http_status = 413


class Unavailable(RewardLoopError):
    """A dependency (learner, reward service, gateway) did not answer in time; retry later."""

    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 503


class RewardServiceError(Unavailable):
    """A remote reward service failed or answered something that is not the contract."""

    http_status = 502


def grpc_status(exc: BaseException) -> grpc.StatusCode:
    """The gRPC status code for an exception (INTERNAL for anything unexpected)."""
    return exc.grpc_code if isinstance(exc, RewardLoopError) else grpc.StatusCode.INTERNAL


def http_status(exc: BaseException) -> int:
    """The HTTP status for an exception (500 for anything unexpected)."""
    return exc.http_status if isinstance(exc, RewardLoopError) else 500
