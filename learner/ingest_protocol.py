"""The ingest stream's protocol pieces that hold no server state: the hello and data-batch
checks and the lenient registration (a message that
is not a TrajectoryBatch is INVALID_ARGUMENT, never INTERNAL; each request arrives with its wire
size, so counting bytes costs no `ByteSize()` walk). `ingest_server.IngestServer` uses them."""

from __future__ import annotations

from collections.abc import Callable

import grpc

from rewardloop import grpc_util
from rewardloop.pb import trajectory_pb2

SERVICE_NAME = trajectory_pb2.DESCRIPTOR.services_by_name["TrajectoryService"].full_name


def hello_problem(first: tuple | grpc_util.BadRequest) -> str:
    """Why the first request (`(batch, size)` or a BadRequest) is not a valid hello, or ""."""
    if isinstance(first, grpc_util.BadRequest):
        return first.details
    first = first[0]
    if not first.HasField("hello"):
        return "hello: the first message of a stream must set hello (see trajectory.proto)"
    if not first.hello.worker_id:
        return "hello.worker_id: must not be empty"
    if len(first.trajectories) > 0 or first.HasField("columns"):
        return "hello: the hello message carries no trajectories"
    return ""


def batch_problem(batch: trajectory_pb2.TrajectoryBatch) -> str:
    """Why a data batch (any message after the hello) breaks the stream order, or ""."""
    if batch.HasField("hello"):
        return "hello: only on the first message"
    if batch.HasField("columns") and len(batch.trajectories):
        return "columns: a batch sets columns or trajectories, not both"
    if batch.batch_seq == 0:
        return "batch_seq: must be >= 1 on data batches"
    return ""


def sized_deserializer() -> Callable[[bytes], object]:
    """`grpc_util.lenient_deserializer(TrajectoryBatch)` that hands the handler
    `(batch, wire bytes)`; undecodable bytes still become a bare `BadRequest`."""
    parse = grpc_util.lenient_deserializer(trajectory_pb2.TrajectoryBatch)

    def deserialize(data: bytes):
        msg = parse(data)
        return msg if isinstance(msg, grpc_util.BadRequest) else (msg, len(data))

    return deserialize


def register_lenient(stream: Callable, server: grpc.Server) -> None:
    """The generated registration of `TrajectoryService.Stream` (the handler `stream`), but with
    a lenient request deserializer: a message that is not a TrajectoryBatch is answered
    INVALID_ARGUMENT and counted, not INTERNAL."""
    handlers = {
        "Stream": grpc.stream_stream_rpc_method_handler(
            stream,
            request_deserializer=sized_deserializer(),
            response_serializer=trajectory_pb2.Ack.SerializeToString,
        )
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)
