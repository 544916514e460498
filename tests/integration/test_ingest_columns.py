"""The column form of TrajectoryBatch on a real IngestServer (port 0): verdicts per row, an Ack
that names only duplicate and rejected ids (`accepted_rest`), exact credits, and the protocol
errors that the two forms allow (both in one batch, columns in the hello)."""

from __future__ import annotations

import struct

import grpc
import pytest
from ingest_testutil import VOCAB, RawStream, started_learner, traj

from rewardloop.actors.trajectory_client import TrajectoryClient
from rewardloop.pb import trajectory_pb2
from rewardloop.wire import trajectory_to_proto
from rewardloop.wire_columns import accepted_ids, batch_to_columns


@pytest.fixture
def learner():
    yield from started_learner()


def hello(raw: RawStream, worker: str = "w1") -> trajectory_pb2.Ack:
    raw.send(trajectory_pb2.TrajectoryBatch(hello=trajectory_pb2.Hello(worker_id=worker)))
    return raw.next_ack()


def test_a_column_batch_gets_row_verdicts_and_exact_credits(learner):
    """Capacity 4: a, then 5 rows (one bad, two past the credits), then a again."""
    buffer, _, server = learner
    raw = RawStream(server.address)
    rows = [
        traj("b"),
        traj("nan", behavior_logprobs=[-0.1, float("nan")]),
        traj("c", completion_ids=[4, 5, 6], behavior_logprobs=[-0.1, -0.2, -0.3]),
        traj("over1"),
        traj("over2"),
    ]
    try:
        assert hello(raw).credits == 4
        raw.send(batch_to_columns(1, [traj("a")]))
        ack1 = raw.next_ack()
        raw.send(batch_to_columns(2, rows))
        ack2 = raw.next_ack()
        raw.send(batch_to_columns(3, [traj("a")]))
        ack3 = raw.next_ack()
    finally:
        raw.close()
    assert ack1.accepted_rest and not ack1.accepted and not ack1.rejected and not ack1.credits
    assert ack2.batch_seq == 2 and ack2.accepted_rest and not ack2.accepted
    reasons = {r.id: r.reason for r in ack2.rejected}
    assert set(reasons) == {"nan", "over1", "over2"}
    assert reasons["nan"].startswith("behavior_logprobs: must be finite")
    assert reasons["over1"].startswith("credits: exceeded (batch of 5, 3 credits left)")
    assert ack2.credits == 1  # 3 spent, b and c held: the bad row's credit comes back
    assert accepted_ids(ack2, rows) == ["b", "c"]
    assert list(ack3.duplicate) == ["a"] and not ack3.rejected and ack3.credits == 1
    held = {t.id: t for g in buffer.take_groups(3, 0, timeout_s=2.0) for t in g}
    assert sorted(held) == ["a", "b", "c"]
    assert held["c"].completion_ids.tolist() == [4, 5, 6]  # its own slice of the column
    assert held["c"].worker_id == "w1"
    stats = server.stats()
    assert stats["accepted"] == 3 and stats["duplicate"] == 1
    assert stats["rejected"] == {"behavior_logprobs": 1, "credits": 2}


def test_a_column_of_the_wrong_shape_rejects_its_batch_and_the_stream_goes_on(learner):
    buffer, _, server = learner
    raw = RawStream(server.address)
    try:
        assert hello(raw).credits == 4
        bad = batch_to_columns(1, [traj("x"), traj("y")])
        bad.columns.reward = struct.pack("<f", 0.5)  # one value for two rows
        raw.send(bad)
        ack = raw.next_ack()
        assert [r.id for r in ack.rejected] == ["x", "y"]
        assert all(r.reason.startswith("columns.reward: 4 bytes") for r in ack.rejected)
        assert ack.credits == 2  # nothing admitted: the credits come straight back
        raw.send(batch_to_columns(2, [traj("z")]))
        assert not raw.next_ack().rejected
    finally:
        raw.close()
    assert len(buffer) == 1
    assert server.stats()["rejected"] == {"columns.reward": 2}


def test_the_length_bound_applies_to_column_batches():
    from rewardloop.learner.buffer import TrajectoryBuffer
    from rewardloop.learner.ingest_server import IngestServer

    buffer = TrajectoryBuffer(capacity=4, max_staleness=1)
    server = IngestServer(buffer, lambda: 0, vocab_size=VOCAB, max_trajectory_tokens=6)
    server.start()
    try:
        with TrajectoryClient(server.address, "w1", timeout_s=5.0) as client:
            res = client.send([traj("fits"), traj("long", prompt_ids=[1] * 5)])
    finally:
        server.stop(grace_s=0.5)
    assert res.accepted == ["fits"]
    assert res.rejected == [
        ("long", "completion_ids: 2 tokens (+ 5 prompt tokens) > learner.max_trajectory_tokens=6")
    ]


def test_the_client_reads_accepted_rest_acks(learner):
    """TrajectoryClient sends columns; its SendResult is what the row form's Acks said."""
    buffer, _, server = learner
    with TrajectoryClient(server.address, "w1", timeout_s=5.0) as client:
        res = client.send([traj("a"), traj("", group="g-e"), traj("a"), traj("b")])
    assert res.accepted == ["a", "b"] and res.duplicate == ["a"]
    assert [tid for tid, _ in res.rejected] == [""]
    assert len(buffer) == 2


@pytest.mark.parametrize("where", ["hello", "batch"])
def test_rows_and_columns_in_one_message_are_a_protocol_error(learner, where):
    _, _, server = learner
    raw = RawStream(server.address)
    try:
        if where == "hello":
            msg = trajectory_pb2.TrajectoryBatch(hello=trajectory_pb2.Hello(worker_id="w1"))
            msg.columns.CopyFrom(batch_to_columns(0, [traj("h")]).columns)
        else:
            assert hello(raw).credits == 4
            msg = batch_to_columns(1, [traj("c1")])
            msg.trajectories.append(trajectory_to_proto(traj("r1")))
        raw.send(msg)
        with pytest.raises(grpc.RpcError) as info:
            raw.next_ack()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert ("hello" if where == "hello" else "columns") in info.value.details()
    finally:
        raw.close()
    assert server.stats()["protocol_errors"] == 1
    with TrajectoryClient(server.address, "w2", timeout_s=5.0) as client:  # server is fine
        assert client.send([traj("ok")]).accepted == ["ok"]
