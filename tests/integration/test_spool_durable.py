"""A worker's spool holds what the learner answered until the learner's resume checkpoint covers
it, so a learner that comes back from an older checkpoint loses nothing.

Real ingest servers on port 0 (two learner processes' worth: incarnation "a", then "b" restored
from a's checkpoint with the real buffer and ledger state round-trip), a real TrajectoryClient
behind the real spool, and the real accounting report. The learner's side is driven by hand:
"a" admits x1..x4, trains x1 and x2, snapshots its state (x3, x4 held in the buffer), admits x5
and x6 while the checkpoint is being written, completes it and dies before any Ack says so.
Whether the worker dies too (its spool reopened by a new process) or lives on (the new learner
answers it), the new learner gets x1..x6 again: x1..x4 (in its checkpoint) are ignored
duplicates, x5, x6 (lost with "a") are admitted and trained once."""

from __future__ import annotations

import pytest
from ingest_testutil import VOCAB, Version, traj

from rewardloop.actors.spool import Spool, read_journal, spool_root
from rewardloop.actors.spooled_sink import SpooledSink
from rewardloop.actors.trajectory_client import TrajectoryClient
from rewardloop.cluster.accounting_report import account
from rewardloop.config import load_config
from rewardloop.learner.accounting import Ledger, read_audit
from rewardloop.learner.buffer import TrajectoryBuffer
from rewardloop.learner.ingest_server import IngestServer


class _Learner:
    """One learner process's ingest side: buffer, ledger (audit), server, durable version."""

    def __init__(self, audit_dir, incarnation: str, version: int, state: dict | None = None):
        self.ledger = Ledger(audit_dir)
        self.buffer = TrajectoryBuffer(capacity=64, max_staleness=8, ledger=self.ledger)
        if state is not None:  # restored from a resume checkpoint (learner/durability.py)
            self.ledger.load_state(state["ledger"])
            self.buffer.load_state(state["buffer"])
        self.version, self.durable = Version(version), 0
        self.server = IngestServer(
            self.buffer,
            self.version,
            vocab_size=VOCAB,
            incarnation=incarnation,
            durable_fn=lambda: self.durable,
        )
        self.server.start()

    def train(self, n: int, step: int) -> list[str]:
        groups = self.buffer.take_groups(n, self.version.v, timeout_s=5.0)
        assert groups is not None, f"{n} groups were not in the buffer"
        trajs = [t for g in groups for t in g]
        self.ledger.trained(trajs, version=self.version.v, step=step)
        return [t.id for t in trajs]

    def snapshot(self) -> dict:
        """Between steps: the checkpoint's state (it is complete once `durable` is set)."""
        return {"ledger": self.ledger.state(), "buffer": self.buffer.state()}

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(grace_s=0.2)
            self.ledger.close()
            self.server = None


def _send(sink, *ids: str, version: int = 0):
    return sink.send([traj(i, version=version, worker_id="w1") for i in ids])


def _sink(target: str, spool_dir) -> SpooledSink:
    # retain_acked=0 on the client: the spool alone keeps what is answered (no memory window)
    client = TrajectoryClient(target, "w1", timeout_s=10.0, max_retries=3, retain_acked=0)
    return SpooledSink(client, Spool(spool_dir, segment_trajectories=2))


def _first_learner(tmp_path):
    """(cfg, audit dir, spool dir, learner "a" at version 0, a worker's sink talking to it)."""
    cfg = load_config(None, [f"out={tmp_path}"])
    audit, spool_dir = tmp_path / "audit", spool_root(cfg) / "w1"
    a = _Learner(audit, "a", version=0)
    return cfg, audit, spool_dir, a, _sink(a.server.address, spool_dir)


def _close(sink, *learners) -> None:
    sink.close()
    sink.spool.close()
    for learner in learners:
        if learner is not None:
            learner.stop()


@pytest.mark.parametrize("worker", ["restarted", "alive"])
def test_what_a_dead_learner_answered_after_its_checkpoint_is_sent_again(tmp_path, worker):
    cfg, audit, spool_dir, a, sink = _first_learner(tmp_path)
    b = None
    try:
        assert sorted(_send(sink, "x1", "x2").accepted) == ["x1", "x2"]
        assert sorted(_send(sink, "x3", "x4").accepted) == ["x3", "x4"]
        assert a.train(2, step=1) == ["x1", "x2"]
        a.version.v = 1
        state = a.snapshot()  # the checkpoint at version 1, being written
        assert sorted(_send(sink, "x5", "x6", version=1).accepted) == ["x5", "x6"]
        a.durable = 1  # written: it covers x1..x4 (answered at version 0), not x5, x6
        a.stop()  # and a dies before an Ack tells the worker so
        assert sorted(sink.spool.unacked_ids) == ["x1", "x2", "x3", "x4", "x5", "x6"]
        b = _Learner(audit, "b", version=2, state=state)
        if worker == "restarted":  # the worker died with it: a new process opens the spool
            sink.close()
            sink.spool.close()
            sink = _sink(b.server.address, spool_dir)
            assert len(sink.spool.unacked()) == 6
            sink.resend_unacked()
            assert sink.resent == 6 and sink.resent_duplicate == 4
        else:  # it lives on: told the new address, it sends on and re-sends a's answers
            sink.inner.target = b.server.address
            assert _send(sink, "x7", version=2).accepted == ["x7"]
            assert sink.resent_orphans == 6 and sink.resent_orphans_duplicate == 4
        new = ["x5", "x6"] + (["x7"] if worker == "alive" else [])
        assert sorted(b.train(len(b.buffer), step=2)) == sorted(["x3", "x4", *new])
        b.version.v = 3
        b.durable = 3  # b's checkpoint at version 3 (everything it answered at version 2)
        _send(sink, "x8", version=3)  # its Ack says so
        assert sink.spool.unacked_ids == ["x8"]
        assert b.train(1, step=3) == ["x8"]
    finally:
        _close(sink, a, b)
    lines = read_audit(audit / "learner.jsonl")
    trained = [x["id"] for x in lines if x["outcome"] == "trained"]
    expect = ["x1", "x2", "x3", "x4", "x5", "x6", "x8"] + (["x7"] if worker == "alive" else [])
    assert sorted(trained) == sorted(expect)  # each once
    # the re-sent x1..x6: what b's checkpoint had is an ignored duplicate, what it lost is not
    assert sorted(x["id"] for x in lines if x["outcome"] == "duplicate") == ["x1", "x2", "x3", "x4"]
    journal = read_journal(spool_dir)
    assert journal["durable"] == {"b": 3} and journal["released"] == set()  # a never said
    assert len(list(spool_dir.glob("seg-*.jsonl"))) <= 1  # only x8's segment is left
    section, _ = account(cfg)
    assert section["lost"] == 0 and section["outcome_conflicts"] == 0
    assert section["trained"] == len(expect) and section["duplicates_ignored"] == 4


@pytest.mark.parametrize("final", ["b", "a"])
def test_what_a_learner_answered_uncovered_before_it_died_at_the_end_is_in_flight(tmp_path, final):
    """The run's end: "a" answers x5, x6 after its last checkpoint and is killed (during the
    driver's final stop, the pool already down); Ray's restart "b" comes back from that
    checkpoint and stops, and no worker ever talks to it. x5, x6 are held in the spool, answered
    only by a dead process: in flight at the end, not lost. The control: the same ids with "a"
    itself the process that stopped and wrote the record (it answered them and then had no
    outcome and no record of them: an ack-and-drop bug) stay lost."""
    cfg, audit, spool_dir, a, sink = _first_learner(tmp_path)
    b = None
    try:
        assert sorted(_send(sink, "x1", "x2", "x3", "x4").accepted) == ["x1", "x2", "x3", "x4"]
        assert a.train(2, step=1) == ["x1", "x2"]
        a.version.v = 1
        state = a.snapshot()  # the last checkpoint, at version 1: x3, x4 in its buffer
        a.durable = 1
        assert sorted(_send(sink, "x5", "x6", version=1).accepted) == ["x5", "x6"]
        if final == "a":  # a stops and records what is in flight, without x5, x6
            a.ledger.write_in_flight({"x3": "w1", "x4": "w1"}, "a")
        a.stop()
        if final == "b":
            b = _Learner(audit, "b", version=1, state=state)
            b.ledger.write_in_flight(b.buffer.held_ids(), "b")  # its stop: x3, x4 held
    finally:
        _close(sink, a, b)
    journal = read_journal(spool_dir)
    assert journal["answers"]["x5"] == ("a", 1) and journal["durable"] == {"a": 1}
    section, lines = account(cfg)
    outcome = {x["id"]: x["outcome"] for x in lines}
    assert [outcome[i] for i in ("x1", "x2")] == ["trained", "trained"]
    assert [outcome[i] for i in ("x3", "x4")] == ["in_flight_at_end"] * 2
    if final == "b":
        assert [outcome[i] for i in ("x5", "x6")] == ["in_flight_at_end"] * 2
        assert section["lost"] == 0 and section["in_flight_at_end"] == 4
    else:
        assert [outcome[i] for i in ("x5", "x6")] == ["lost", "lost"]
        assert section["lost"] == 2
