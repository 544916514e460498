"""A learner that has forgotten old ids (bounded memory) still trains each trajectory at most once,
and the run's accounting report counts a stale re-send of a trained id as a duplicate.

Real ingest server on port 0, a real TrajectoryClient behind the worker's spool, the real
accounting report over the spool journal and the learner's audit."""

from __future__ import annotations

from ingest_testutil import VOCAB, Version, traj

from rewardloop.actors.spool import Spool, spool_root
from rewardloop.actors.spooled_sink import SpooledSink
from rewardloop.actors.trajectory_client import TrajectoryClient
from rewardloop.cluster.accounting_report import account
from rewardloop.config import load_config
from rewardloop.learner.accounting import Ledger
from rewardloop.learner.buffer import TrajectoryBuffer
from rewardloop.learner.ingest_server import IngestServer


def test_a_forgotten_id_resent_is_refused_stale_and_counted_as_a_duplicate(tmp_path):
    cfg = load_config(None, [f"out={tmp_path}"])
    ledger = Ledger(tmp_path / "audit")
    buffer = TrajectoryBuffer(capacity=16, max_staleness=1, ledger=ledger)
    version = Version(0)
    server = IngestServer(buffer, version, vocab_size=VOCAB)
    server.start()
    sink = SpooledSink(
        TrajectoryClient(server.address, "w1", timeout_s=10.0), Spool(spool_root(cfg) / "w1")
    )
    x, y = traj("x", version=0), traj("y", version=0)
    try:
        assert sorted(sink.send([x, y]).accepted) == ["x", "y"]
        groups = buffer.take_groups(2, 0, timeout_s=5.0)
        ledger.trained([t for g in groups for t in g], version=0, step=1)
        assert sink.send([traj("x", version=0)]).duplicate == ["x"]  # remembered: a duplicate
        # versions go by (the learner trains on): x's version falls out of memory
        for v in range(1, buffer.max_staleness + buffer.forget_margin + 2):
            version.v = v
            buffer.prune(v)
        assert not ledger.decided("x") and buffer.stats()["ids_remembered"] == 0
        # the same trajectory re-sent (a restarted worker), and a never-seen one as old
        again = sink.send([traj("x", version=0), traj("z", version=0)])
        assert not again.accepted and not again.duplicate
        assert {tid for tid, reason in again.rejected if "too stale" in reason} == {"x", "z"}
        assert len(buffer) == 0  # nothing to train either on
    finally:
        sink.close()
        server.stop(grace_s=0.5)
    ledger.write_in_flight(buffer.held_ids())
    ledger.close()

    section, joined = account(cfg)
    outcomes = {line["id"]: line["outcome"] for line in joined}
    assert outcomes == {"x": "trained", "y": "trained", "z": "stale"}
    assert section["generated"] == 3 and section["trained"] == 2 and section["stale"] == 1
    assert section["lost"] == 0 and section["outcome_conflicts"] == 0
    # the duplicate the learner knew of, plus the stale re-send of the forgotten, trained x
    assert section["duplicates_ignored"] == 2
