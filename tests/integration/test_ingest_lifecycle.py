"""TrajectoryService's lifecycle: health, stop mid-stream, restart, resend, abort (real gRPC, port 0).

Every id ends in exactly one state across a server restart: unacked batches are resent and
admitted once, acked ones come back as duplicates.
"""

from __future__ import annotations

import threading
import time

import pytest
from ingest_testutil import VOCAB, Version, started_learner, traj, wait_until

from rewardloop import grpc_util
from rewardloop.actors.trajectory_client import TrajectoryClient
from rewardloop.errors import Unavailable
from rewardloop.learner.buffer import TrajectoryBuffer
from rewardloop.learner.ingest_server import IngestServer


@pytest.fixture
def learner():
    yield from started_learner()


def test_health_serving_then_stop(learner):
    _, _, server = learner
    assert grpc_util.check_health(server.address, timeout_s=2.0) == "SERVING"
    assert grpc_util.check_health(server.address, "rewardloop.pb.TrajectoryService") == "SERVING"
    server.stop(grace_s=0.5)
    with pytest.raises(Unavailable):
        grpc_util.check_health(server.address, timeout_s=1.0)


def test_stop_mid_stream_then_reconnect_reports_duplicates(learner):
    buffer, version, server = learner
    client = TrajectoryClient(server.address, "w1", timeout_s=5.0, max_retries=1)
    try:
        assert sorted(client.send([traj("a"), traj("b")]).accepted) == ["a", "b"]
        server.stop(grace_s=0.5)  # the client's stream is open: must not hang
        with pytest.raises(Unavailable):
            client.send([traj("c")])
        restarted = IngestServer(buffer, version, port=server.port, vocab_size=VOCAB)
        restarted.start()
        try:
            res = client.send([traj("a"), traj("b"), traj("c")])
            assert sorted(res.duplicate) == ["a", "b"] and res.accepted == ["c"]
            assert client.stats()["reconnects"] >= 1
        finally:
            restarted.stop(grace_s=0.5)
    finally:
        client.close()
    assert buffer.stats()["accepted"] == 3


def test_server_restart_while_send_waits_for_credits(learner):
    buffer, version, server = learner
    client = TrajectoryClient(server.address, "w1", timeout_s=10.0, batch_size=2)
    trajs = [traj(f"t{i}") for i in range(6)]
    results: list = []
    errors: list = []

    def run() -> None:
        try:
            results.append(client.send(trajs))
        except Exception as exc:  # surfaced by the assertions below
            errors.append(exc)

    sender = threading.Thread(target=run)
    sender.start()
    restarted = None
    try:
        wait_until(lambda: len(buffer) == 4, what="4 buffered trajectories")
        server.stop(grace_s=0.5)
        restarted = IngestServer(buffer, version, port=server.port, vocab_size=VOCAB)
        restarted.start()
        # The buffer is full, so the new stream starts with no credits until the learner takes.
        assert buffer.take_groups(4, current_version=0, timeout_s=5.0) is not None
        sender.join(timeout=15.0)
        assert not sender.is_alive() and not errors
    finally:
        client.close()
        if restarted is not None:
            restarted.stop(grace_s=0.5)
    assert sorted(results[0].accepted) == sorted(t.id for t in trajs)
    assert buffer.stats()["accepted"] == 6 and len(buffer) == 2


class GatedVersion(Version):
    """A version_fn that, once armed, blocks the server mid-batch (before it can ack)."""

    def __init__(self) -> None:
        super().__init__(0)
        self.armed = False
        self.entered = threading.Event()
        self.gate = threading.Event()

    def __call__(self) -> int:
        if self.armed:
            self.entered.set()
            self.gate.wait(10.0)
        return self.v


def test_unacked_batch_is_resent_after_restart_and_admitted_once():
    buffer = TrajectoryBuffer(capacity=8, max_staleness=1)
    gated = GatedVersion()
    server = IngestServer(buffer, gated, vocab_size=VOCAB)
    server.start()
    client = TrajectoryClient(server.address, "w1", timeout_s=10.0)
    restarted = None
    try:
        assert client.send([traj("a")]).accepted == ["a"]
        gated.armed = True
        out: list = []
        sender = threading.Thread(target=lambda: out.append(client.send([traj("b"), traj("c")])))
        sender.start()
        assert gated.entered.wait(5.0)  # the old server holds b, c and has not acked them
        server.stop(grace_s=0.5)
        restarted = IngestServer(buffer, Version(0), port=server.port, vocab_size=VOCAB)
        restarted.start()
        sender.join(timeout=10.0)
        assert not sender.is_alive()
        assert sorted(out[0].accepted) == ["b", "c"]
        gated.gate.set()  # the old server's late admission attempt finds them already buffered
        wait_until(lambda: buffer.stats()["duplicate"] == 2, what="late duplicates")
    finally:
        gated.gate.set()
        client.close()
        server.stop(grace_s=0.5)
        if restarted is not None:
            restarted.stop(grace_s=0.5)
    assert buffer.stats()["accepted"] == 3 and len(buffer) == 3


def test_abort_unblocks_a_send_waiting_for_credits():
    """Shutdown path: a worker blocked on credits returns at once when aborted."""
    buffer = TrajectoryBuffer(capacity=2, max_staleness=1)
    server = IngestServer(buffer, version_fn=lambda: 0, port=0)
    server.start()
    client = TrajectoryClient(server.address, "w-abort", timeout_s=30, batch_size=2)
    trajs = [traj(f"a{i}", worker_id="w-abort") for i in range(5)]
    errors: list[str] = []

    def send() -> None:
        try:
            client.send(trajs)
        except Unavailable as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=send)
    thread.start()
    try:
        # 2 credits for 5 trajectories and nobody consumes: the send waits for credits.
        wait_until(lambda: len(buffer) == 2 and client.credits == 0, what="credits spent")
        assert thread.is_alive()
        t0 = time.monotonic()
        client.abort()
        thread.join(5)
        assert not thread.is_alive() and time.monotonic() - t0 < 5
        assert errors and "aborted" in errors[0]
    finally:
        client.close()
        server.stop()
