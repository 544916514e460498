"""The ingest stream's protocol pieces that hold no server state: the hello check, the
folding of credit grants into one Ack, and the lenient registration (a message that is not a
TrajectoryBatch is INVALID_ARGUMENT, never INTERNAL). `ingest_server.IngestServer` uses them."""

from __future__ import annotations

import queue

import grpc

from rewardloop import grpc_util
from rewardloop.pb import trajectory_pb2, trajectory_pb2_grpc

SERVICE_NAME = trajectory_pb2.DESCRIPTOR.services_by_name["TrajectoryService"].full_name


def coalesce_grants(
    ack: trajectory_pb2.Ack, acks: queue.Queue
) -> tuple[trajectory_pb2.Ack, object]:
    """Fold the credit-only Acks queued right behind `ack` into one message (credits add up).

    A burst of grants (the learner released several workers' items while the stream was busy
    sending) then costs one message instead of one each; every message costs gRPC-Python about
    as much as decoding a batch. Returns the Ack to send and the first queued item that could
    not be folded (or None).
    """
    while True:
        try:
            nxt = acks.get_nowait()
        except queue.Empty:
            return ack, None
        if not isinstance(nxt, trajectory_pb2.Ack):
            return ack, nxt
        if nxt.batch_seq and ack.batch_seq:
            return ack, nxt  # two batch answers: each keeps its own message
        if ack.batch_seq == 0:  # a grant folds into whatever follows it
            ack, nxt = nxt, ack
        ack.credits += nxt.credits
        ack.learner_version = max(ack.learner_version, nxt.learner_version)


def hello_problem(first: trajectory_pb2.TrajectoryBatch | grpc_util.BadRequest) -> str:
    if isinstance(first, grpc_util.BadRequest):
        return first.details
    if not first.HasField("hello"):
        return "hello: the first message of a stream must set hello (see trajectory.proto)"
    if not first.hello.worker_id:
        return "hello.worker_id: must not be empty"
    if len(first.trajectories) > 0 or first.HasField("columns"):
        return "hello: the hello message carries no trajectories"
    return ""


def register_lenient(
    servicer: trajectory_pb2_grpc.TrajectoryServiceServicer, server: grpc.Server
) -> None:
    """The generated registration, but with a lenient request deserializer: a message that is
    not a TrajectoryBatch is answered INVALID_ARGUMENT and counted, not INTERNAL."""
    handlers = {
        "Stream": grpc.stream_stream_rpc_method_handler(
            servicer.Stream,
            request_deserializer=grpc_util.lenient_deserializer(trajectory_pb2.TrajectoryBatch),
            response_serializer=trajectory_pb2.Ack.SerializeToString,
        )
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)
