"""TrajectoryService's protocol: acks, rejections and credits, on a real IngestServer (port 0).

Real TrajectoryClients and raw stubs that speak the protocol wrongly on purpose; stopping and
restarting the server is in test_ingest_lifecycle.py.
"""

from __future__ import annotations

import struct
import threading
import time

import grpc
import pytest
from ingest_testutil import VOCAB, RawStream, started_learner, traj, wait_until

from rewardloop.actors.trajectory_client import TrajectoryClient
from rewardloop.pb import trajectory_pb2
from rewardloop.wire import trajectory_to_proto


@pytest.fixture
def learner():
    yield from started_learner()


def test_acks_name_accepted_duplicate_and_rejected(learner):
    buffer, _, server = learner
    with TrajectoryClient(server.address, "w1", timeout_s=5.0) as client:
        first = client.send([traj("a"), traj("b")])
        assert sorted(first.accepted) == ["a", "b"] and not first.duplicate and not first.rejected
        bad = [
            traj("c"),
            traj("bad-logprobs", behavior_logprobs=[-0.1]),
            traj("", group="g-empty"),
            traj("bad-token", completion_ids=[4, VOCAB]),
            traj("a"),
        ]
        res = client.send(bad)
        assert res.accepted == ["c"] and res.duplicate == ["a"]
        reasons = dict(res.rejected)
        assert reasons["bad-logprobs"].startswith("behavior_logprobs")
        assert reasons[""].startswith("id")
        assert reasons["bad-token"].startswith("completion_ids")
        # The stream survived the bad batch and keeps serving.
        assert client.send([traj("d")]).accepted == ["d"]
        assert client.stats()["reconnects"] == 0
    stats = server.stats()
    assert stats["rejected"] == {"behavior_logprobs": 1, "id": 1, "completion_ids": 1}
    assert stats["accepted"] == 4 and stats["duplicate"] == 1
    assert len(buffer) == 4


def test_worker_id_mismatch_is_rejected(learner):
    _, _, server = learner
    with TrajectoryClient(server.address, "w1", timeout_s=5.0) as client:
        res = client.send([traj("x", worker_id="someone-else"), traj("y", worker_id="w1")])
    assert res.accepted == ["y"] and res.rejected[0][1].startswith("worker_id")


def test_client_blocks_on_credits_and_resumes_after_take(learner):
    buffer, _, server = learner
    sizes: list[int] = []
    stop = threading.Event()

    def watch() -> None:  # samples the buffer fill while the client pushes
        while not stop.is_set():
            sizes.append(len(buffer))
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    client = TrajectoryClient(server.address, "w1", timeout_s=10.0, batch_size=3)
    results: list = []
    trajs = [traj(f"t{i}", group=f"G{i // 2}", group_size=2) for i in range(8)]
    sender = threading.Thread(target=lambda: results.append(client.send(trajs)))
    sender.start()
    try:
        wait_until(lambda: len(buffer) == 4, what="the first 4 trajectories")
        time.sleep(0.2)
        assert sender.is_alive(), "send() must wait: the learner granted only 4 credits"
        assert client.stats()["sent"] == 4 and client.credits == 0
        groups = buffer.take_groups(2, current_version=0, timeout_s=5.0)
        assert [t.id for g in groups for t in g] == ["t0", "t1", "t2", "t3"]
        sender.join(timeout=10.0)
        assert not sender.is_alive()
        cs = client.stats()
    finally:
        stop.set()
        watcher.join()
        client.close()
    assert sorted(results[0].accepted) == sorted(t.id for t in trajs)
    assert max(sizes) <= buffer.capacity
    st = server.stats()
    assert "credits" not in st["rejected"] and buffer.stats()["rejected"] == {}
    assert cs["granted_on_stream"] >= cs["sent_on_stream"] == 8


def test_raw_stream_exceeding_credits_gets_credit_rejections(learner):
    buffer, _, server = learner
    raw = RawStream(server.address)
    try:
        raw.send(trajectory_pb2.TrajectoryBatch(hello=trajectory_pb2.Hello(worker_id="greedy")))
        hello_ack = raw.next_ack()
        assert hello_ack.batch_seq == 0 and hello_ack.credits == 4
        batch = [trajectory_to_proto(traj(f"r{i}")) for i in range(6)]
        raw.send(trajectory_pb2.TrajectoryBatch(batch_seq=1, trajectories=batch))
        ack = raw.next_ack()
        assert ack.batch_seq == 1
        assert list(ack.accepted) == ["r0", "r1", "r2", "r3"]
        assert [r.id for r in ack.rejected] == ["r4", "r5"]
        assert all(r.reason.startswith("credits") for r in ack.rejected)
    finally:
        raw.close()
    assert server.stats()["rejected"] == {"credits": 2}
    assert len(buffer) == 4


def test_malformed_bytes_in_a_batch_are_rejected_alone(learner):
    """Packed arrays that are cut short, NaN or out of vocab reject only their trajectory."""
    buffer, _, server = learner
    good = [trajectory_to_proto(traj(f"ok{i}", completion_ids=[4, 5 + i])) for i in range(3)]
    cut = trajectory_to_proto(traj("cut"))
    cut.prompt_ids = cut.prompt_ids[:-1]  # 11 bytes: not whole int32 ids
    nan = trajectory_to_proto(traj("nan"))
    nan.behavior_logprobs = struct.pack("<2f", -0.1, float("nan"))
    vocab = trajectory_to_proto(traj("vocab"))
    vocab.completion_ids = struct.pack("<2i", 4, VOCAB)
    short = trajectory_to_proto(traj("short"))
    short.behavior_logprobs = struct.pack("<f", -0.1)
    raw = RawStream(server.address)
    try:
        raw.send(trajectory_pb2.TrajectoryBatch(hello=trajectory_pb2.Hello(worker_id="w1")))
        assert raw.next_ack().credits == 4
        acks = []
        batches = [[good[0], cut, nan, good[1]], [vocab, short], [good[2]]]
        for seq, batch in enumerate(batches, 1):
            raw.send(trajectory_pb2.TrajectoryBatch(batch_seq=seq, trajectories=batch))
            acks.append(raw.next_ack())
    finally:
        raw.close()
    assert [list(a.accepted) for a in acks] == [["ok0", "ok1"], [], ["ok2"]]
    # The credits spent on rejected trajectories come back with each answer.
    assert [a.credits for a in acks] == [2, 2, 0]
    reasons = {r.id: r.reason for a in acks for r in a.rejected}
    assert reasons["cut"].startswith("prompt_ids: 11 bytes")
    assert reasons["nan"].startswith("behavior_logprobs: must be finite")
    assert reasons["vocab"].startswith("completion_ids: token ids must be in [0, 50)")
    assert reasons["short"].startswith("behavior_logprobs: needs one float32")
    assert server.stats()["rejected"] == {
        "prompt_ids": 1,
        "behavior_logprobs": 2,
        "completion_ids": 1,
    }
    ids = {t.id: t for g in buffer.take_groups(3, 0, timeout_s=2.0) for t in g}
    assert ids["ok2"].completion_ids.tolist() == [4, 7]  # its own slice of the batch's arrays
    # The stream and the server survived: a proper client is served next.
    with TrajectoryClient(server.address, "w2", timeout_s=5.0) as client:
        assert client.send([traj("after")]).accepted == ["after"]


def test_grants_reach_a_worker_that_holds_credits_and_sends_nothing(learner):
    """A worker keeping credits for groups that await rewards sends nothing while it waits for
    more: the server must push the grant on its own, not hold it for the next batch's Ack."""
    buffer, _, server = learner
    raw = RawStream(server.address)
    try:
        raw.send(trajectory_pb2.TrajectoryBatch(hello=trajectory_pb2.Hello(worker_id="w1")))
        assert raw.next_ack().credits == 4
        rows = [trajectory_to_proto(traj(f"r{i}", group="g2", group_size=2)) for i in range(2)]
        raw.send(trajectory_pb2.TrajectoryBatch(batch_seq=1, trajectories=rows))
        ack = raw.next_ack()
        assert list(ack.accepted) == ["r0", "r1"] and ack.credits == 0  # 2 credits still held
        assert len(buffer.take_groups(1, 0, timeout_s=5.0)) == 1  # the learner frees 2
        grant = raw.next_ack()  # nothing was sent since: this comes unasked
        assert grant.batch_seq == 0 and grant.credits == 2
        stats = server.stats()
        assert stats["credit_acks"] == 1 and stats["grants"] == 1
    finally:
        raw.close()


def test_missing_hello_aborts_with_invalid_argument(learner):
    _, _, server = learner
    raw = RawStream(server.address)
    try:
        raw.send(
            trajectory_pb2.TrajectoryBatch(
                batch_seq=1, trajectories=[trajectory_to_proto(traj("h"))]
            )
        )
        with pytest.raises(grpc.RpcError) as info:
            raw.next_ack()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "hello" in info.value.details()
    finally:
        raw.close()
    # The server is fine: a proper client is served next.
    with TrajectoryClient(server.address, "w1", timeout_s=5.0) as client:
        assert client.send([traj("ok")]).accepted == ["ok"]


def test_staleness_rejected_on_ingest_and_dropped_at_take(learner):
    buffer, version, server = learner
    version.v = 3
    with TrajectoryClient(server.address, "w1", timeout_s=5.0) as client:
        res = client.send([traj("v1", version=1), traj("v2", version=2), traj("v3", version=3)])
        assert sorted(res.accepted) == ["v2", "v3"]
        assert res.rejected[0][0] == "v1" and res.rejected[0][1].startswith("policy_version")
        credits_before = client.credits
        version.v = 4
        groups = buffer.take_groups(1, current_version=4, timeout_s=2.0)
        assert [t.id for g in groups for t in g] == ["v3"]
        assert buffer.stats()["dropped_stale"] == 1
        # Both the trained and the dropped trajectory return their credits to the worker.
        wait_until(lambda: client.credits == credits_before + 2, what="returned credits")
    assert server.stats()["rejected"] == {"policy_version": 1}


def test_credits_shared_between_two_workers(learner):
    buffer, _, server = learner
    c1 = TrajectoryClient(server.address, "w1", timeout_s=5.0)
    c2 = TrajectoryClient(server.address, "w2", timeout_s=5.0)
    try:
        assert c1.send([traj("a1"), traj("a2"), traj("a3")]).n_accepted == 3
        # w1 still holds its 4th credit, so w2 joins with none and must wait for the learner.
        done = threading.Event()
        out: list = []
        t = threading.Thread(
            target=lambda: (out.append(c2.send([traj("b1"), traj("b2")])), done.set())
        )
        t.start()
        # the learner must know w2's stream before it releases credits, or they all go back
        # to w1 (the only stream then) and w2 waits in vain (a race on a loaded machine)
        wait_until(lambda: server.stats()["credits"]["streams"] == 2, 10.0, "w2's stream")
        assert not done.is_set()
        assert len(buffer) == 3 and c2.credits == 0
        # Released credits go to the stream using the least: w2 gets 2 of w1's 3.
        assert buffer.take_groups(3, current_version=0, timeout_s=5.0) is not None
        t.join(timeout=10.0)
        assert out and sorted(out[0].accepted) == ["b1", "b2"]
    finally:
        c1.close()
        c2.close()
    snap = server.stats()["credits"]
    assert sum(snap["outstanding"].values()) + sum(snap["held"].values()) + snap["free"] == 4
