"""The gRPC server under both FeedbackService faces: the gateway's and the score server's.

A `GrpcServer` with the servicer registered through `bad_input.add_checked_service` (a request
that does not decode reaches `servicer.bad_message`, so it is counted and answered
INVALID_ARGUMENT), `grpc.health.v1` naming the service, and the bound `port` and `target`.
"""

from __future__ import annotations

from typing import Self

from rewardloop import grpc_util
from rewardloop.pb import feedback_pb2

from .bad_input import add_checked_service

SERVICE = feedback_pb2.DESCRIPTOR.services_by_name["FeedbackService"]
SERVICE_NAME = SERVICE.full_name


class FeedbackGrpcServer:
    """Serves `servicer` (which has `bad_message`); `server_kwargs` go to `GrpcServer`."""

    def __init__(self, servicer, **server_kwargs):
        self._server = grpc_util.GrpcServer(
            [
                lambda s: add_checked_service(
                    s, servicer, SERVICE, feedback_pb2, servicer.bad_message
                )
            ],
            health_names=[SERVICE_NAME],
            **server_kwargs,
        )

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def target(self) -> str:
        return self._server.target

    def start(self) -> Self:
        self._server.start()
        return self

    def stop(self, grace_s: float = 2.0) -> None:
        self._server.stop(grace_s)
