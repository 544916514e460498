"""Live feedback over gRPC: `FeedbackService.SubmitRating` on `serve.grpc_port`.

The same call as `POST /v1/feedback`, in the gateway's contract (protos/rewardloop/pb/
feedback.proto): `item_id` is the response id, `value` the reward (or `stars` 1-5), `rater`
the product's `user`, `idempotency_key` the key. The other FeedbackService methods belong to
the feedback gateway and answer UNIMPLEMENTED here. With `serve.api_keys` set, calls carry
`authorization: Bearer <the first key>`; health (`grpc.health.v1`) needs none.
"""

from __future__ import annotations

import logging

from rewardloop import grpc_util
from rewardloop.auth import ServerSecurity
from rewardloop.pb import feedback_pb2, feedback_pb2_grpc

log = logging.getLogger(__name__)


class LiveFeedbackServicer(feedback_pb2_grpc.FeedbackServiceServicer):
    def __init__(self, core):
        self.core = core

    def SubmitRating(self, request, context):
        def call():
            res = self.core.feedback(
                request.item_id,
                None if request.stars else float(request.value),
                request.rater,
                request.idempotency_key,
                int(request.stars) or None,
            )
            return feedback_pb2.SubmitRatingResponse(
                stored=res["stored"], duplicate=res["duplicate"]
            )

        return grpc_util.answer_unary(context, call, log=log, what="serve: gRPC feedback failed")


def feedback_server(core, host: str, port: int, token: str = "") -> grpc_util.GrpcServer:
    servicer = LiveFeedbackServicer(core)
    return grpc_util.GrpcServer(
        [lambda s: feedback_pb2_grpc.add_FeedbackServiceServicer_to_server(servicer, s)],
        host=host,
        port=port,
        max_workers=8,
        health_names=["rewardloop.FeedbackService"],
        name="serve-feedback-grpc",
        what="serve.grpc_port",
        security=ServerSecurity(token=token, section="serve") if token else None,
    )
