"""Ingest's size bounds over a real stream: a trajectory past learner.max_trajectory_tokens is
rejected naming the key, counted, and leaves the buffer and the stream as they were; a message
past the gRPC size cap is refused while the server keeps serving."""

from __future__ import annotations

import grpc
import pytest
from ingest_testutil import VOCAB, RawStream, Version, traj

from rewardloop import grpc_util
from rewardloop.learner.buffer import TrajectoryBuffer
from rewardloop.learner.ingest_server import SERVICE_NAME, IngestServer
from rewardloop.pb import trajectory_pb2, trajectory_pb2_grpc
from rewardloop.wire import trajectory_to_proto

HUGE = 7_800_000  # completion tokens: 62.4 MB of ids + log-probs, still under the 64 MiB cap


@pytest.fixture
def server():
    buffer = TrajectoryBuffer(capacity=8, max_staleness=1)
    ingest = IngestServer(buffer, Version(0), vocab_size=VOCAB, max_trajectory_tokens=65536)
    ingest.start()
    yield ingest
    ingest.stop(grace_s=0.5)


def test_a_78m_token_trajectory_is_rejected_naming_the_bound(server):
    huge = trajectory_to_proto(traj("huge"))
    huge.completion_ids = b"\1\0\0\0" * HUGE
    huge.behavior_logprobs = b"\0\0\0\0" * HUGE
    raw = RawStream(server.address)
    try:
        raw.send(trajectory_pb2.TrajectoryBatch(hello=trajectory_pb2.Hello(worker_id="w")))
        assert raw.next_ack().credits > 0
        ok = trajectory_to_proto(traj("ok"))
        raw.send(trajectory_pb2.TrajectoryBatch(batch_seq=1, trajectories=[huge, ok]))
        ack = raw.next_ack()
        assert ack.batch_seq == 1 and list(ack.accepted) == ["ok"]
        bound = "learner.max_trajectory_tokens=65536"
        reason = f"completion_ids: {HUGE} tokens (+ 3 prompt tokens) > {bound}"
        assert [(r.id, r.reason) for r in ack.rejected] == [("huge", reason)]
        stats = server.stats()
        assert stats["rejected"] == {"completion_ids": 1} and stats["accepted"] == 1
        assert len(server.buffer) == 1  # only the good one went in
        after = [trajectory_to_proto(traj("next"))]
        raw.send(trajectory_pb2.TrajectoryBatch(batch_seq=2, trajectories=after))
        assert list(raw.next_ack().accepted) == ["next"]  # the stream carries on
    finally:
        raw.close()


def test_a_message_past_the_grpc_cap_is_refused_and_the_server_keeps_serving(server):
    big = trajectory_to_proto(traj("big"))
    big.prompt_ids = b"\1\0\0\0" * ((grpc_util.MAX_MESSAGE_BYTES >> 2) + 1)
    options = grpc_util.channel_options(max_message_bytes=grpc_util.MAX_MESSAGE_BYTES * 2)
    channel = grpc.insecure_channel(server.address, options=options)
    hello = trajectory_pb2.TrajectoryBatch(hello=trajectory_pb2.Hello(worker_id="w"))
    batch = trajectory_pb2.TrajectoryBatch(batch_seq=1, trajectories=[big])
    try:
        stub = trajectory_pb2_grpc.TrajectoryServiceStub(channel)
        call = stub.Stream(iter([hello, batch]), timeout=20.0)
        with pytest.raises(grpc.RpcError) as info:
            list(call)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        channel.close()
    assert len(server.buffer) == 0
    assert grpc_util.check_health(server.address, SERVICE_NAME, timeout_s=2.0) == "SERVING"
