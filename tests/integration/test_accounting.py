"""Exactly-once accounting: the learner's Ledger on its own, and a real run on a local Ray whose
summary.json accounting adds up, loses nothing and matches the audit files line for line."""

from __future__ import annotations

import json
import pickle
from collections import Counter

import pytest

from rewardloop.config import load_config
from rewardloop.learner.accounting import Ledger, read_audit
from rewardloop.learner.buffer import TrajectoryBuffer
from rewardloop.trajectory import Trajectory


def _traj(tid: str, group: str = "g", version: int = 0, size: int = 2) -> Trajectory:
    return Trajectory(tid, group, [1, 2], [3, 4], [-0.1, -0.2], 1.0, version, "w0", size)


# ---- the Ledger ------------------------------------------------------------------------------


def test_each_id_gets_one_outcome_and_one_audit_line(tmp_path):
    ledger = Ledger(tmp_path)
    a, b, c = _traj("a"), _traj("b"), _traj("c")
    ledger.taken([a, b])
    assert ledger.counts()["taken"] == 2
    ledger.trained([a, b], version=3, step=4)
    ledger.dropped([c], "stale", 3, "too old")
    assert ledger.reject("d", "completion_ids: token 999 >= vocab", "w1", 3)
    assert ledger.reject("e", "policy_version: 0 is too stale (must be >= 2)", "w1", 3)
    # a second outcome for a decided id is refused: a duplicate, never counted twice
    assert not ledger.reject("a", "buffer full", "w0")
    ledger.duplicate("b", "w0")
    ledger.trained([a], version=4, step=5)  # a bug upstream would show as a conflict
    counts = ledger.counts()
    assert counts == {
        "trained": 2,
        "stale": 2,
        "expired": 0,
        "rejected": 1,
        "duplicates_ignored": 2,
        "conflicts": 1,
        "maybe_duplicates": 0,
        "taken": 0,
    }
    lines = read_audit(tmp_path / "learner.jsonl")
    finals = Counter(x["outcome"] for x in lines if x["outcome"] != "duplicate")
    assert finals == {"trained": 2, "stale": 2, "rejected": 1}
    assert sum(x["outcome"] == "duplicate" for x in lines) == 2
    by_id = {x["id"]: x for x in lines if x["outcome"] != "duplicate"}
    assert by_id["a"]["step"] == 4 and by_id["a"]["version"] == 3
    assert by_id["d"]["worker"] == "w1" and "vocab" in by_id["d"]["reason"]


def test_state_round_trips_and_cuts_the_audit_back(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.trained([_traj("a"), _traj("b")], version=1, step=1)
    ledger.taken([_traj("c")])
    state = pickle.loads(pickle.dumps(ledger.state()))  # plain and picklable
    ledger.trained([_traj("c")], version=2, step=2)  # after the checkpoint: undone by restore
    ledger.reject("x", "buffer full")
    ledger.close()

    restored = Ledger(tmp_path)  # a restarted learner opens the same audit
    restored.load_state(state)
    assert restored.counts()["trained"] == 2 and restored.counts()["rejected"] == 0
    assert restored.decided("a") and not restored.decided("c") and not restored.decided("x")
    assert restored.counts()["taken"] == 0  # c is undecided again: whoever holds it decides
    assert [x["id"] for x in read_audit(tmp_path / "learner.jsonl")] == ["a", "b"]
    restored.trained([_traj("c")], version=2, step=2)
    assert [x["id"] for x in read_audit(tmp_path / "learner.jsonl")] == ["a", "b", "c"]


def test_a_torn_last_line_is_skipped_and_the_next_starts_fresh(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.trained([_traj("a")], version=1, step=1)
    ledger.close()
    with (tmp_path / "learner.jsonl").open("ab") as f:
        f.write(b'{"id":"torn","outc')  # a learner killed mid-write
    again = Ledger(tmp_path)
    again.trained([_traj("b")], version=1, step=2)
    assert [x["id"] for x in read_audit(tmp_path / "learner.jsonl")] == ["a", "b"]


def test_the_buffer_tells_the_ledger_every_way_out(tmp_path):
    ledger = Ledger(tmp_path)
    buf = TrajectoryBuffer(8, max_staleness=1, ledger=ledger, partial_group_timeout_s=0.0)
    for tid, group in [("a", "g1"), ("b", "g1"), ("c", "g2"), ("d", "g3"), ("e", "g3")]:
        assert buf.add(_traj(tid, group), current_version=0)[0] == "accepted"
    taken = buf.take_groups(1, current_version=0, timeout_s=1.0)  # g2 is partial: expires
    assert [t.id for t in taken[0]] == ["a", "b"]
    assert ledger.counts()["taken"] == 2 and ledger.counts()["expired"] == 1
    buf.prune(current_version=5)  # g3 is now too stale
    assert ledger.counts()["stale"] == 2
    assert buf.held_ids() == {}
    ledger.trained(taken[0], version=0, step=1)
    lines = {x["id"]: x for x in read_audit(tmp_path / "learner.jsonl")}
    assert {k: v["outcome"] for k, v in lines.items()} == {
        "a": "trained",
        "b": "trained",
        "c": "expired",
        "d": "stale",
        "e": "stale",
    }


def test_ingest_counts_a_resent_rejected_id_as_a_duplicate_not_a_second_outcome(tmp_path):
    from ingest_testutil import VOCAB, Version, traj

    from rewardloop.actors.trajectory_client import TrajectoryClient
    from rewardloop.learner.ingest_server import IngestServer

    ledger = Ledger(tmp_path)
    buffer = TrajectoryBuffer(capacity=8, max_staleness=1, ledger=ledger)
    version = Version(3)
    server = IngestServer(buffer, version, vocab_size=VOCAB)
    server.start()
    client = TrajectoryClient(server.address, "w1", timeout_s=10.0)
    try:
        first = client.send([traj("old", version=0), traj("bad", completion_ids=[4, 999])])
        assert sorted(tid for tid, _ in first.rejected) == ["bad", "old"]
        # the same ids again (a restarted worker re-sending): now valid, still not admitted
        again = client.send([traj("old", version=3), traj("bad", version=3), traj("ok", version=3)])
        assert again.accepted == ["ok"] and sorted(again.duplicate) == ["bad", "old"]
    finally:
        client.close()
        server.stop(grace_s=0.5)
    counts = server.stats()["accounting"]
    assert counts["stale"] == 1 and counts["rejected"] == 1 and counts["duplicates_ignored"] == 2
    lines = {
        x["id"]: x for x in read_audit(tmp_path / "learner.jsonl") if x["outcome"] != "duplicate"
    }
    assert lines["old"]["outcome"] == "stale" and lines["old"]["worker"] == "w1"
    assert lines["bad"]["outcome"] == "rejected" and "completion_ids" in lines["bad"]["reason"]
    assert len(buffer) == 1


# ---- a real run ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished(model_cache, ray_local, tmp_path_factory):
    from rewardloop.cluster.run import train

    out = tmp_path_factory.mktemp("accounting-run")
    cfg = load_config(
        None,
        [
            f"model.cache_dir={model_cache}",
            f"out={out}",
            "learner.max_steps=4",
            "eval.every_steps=0",
            "eval.samples_per_prompt=2",
            "rollout.num_workers=1",
        ],
    )
    return out, train(cfg, progress=False)


def test_a_finished_run_loses_nothing_and_adds_up(finished):
    out, summary = finished
    acc = json.loads((out / "summary.json").read_text())["accounting"]
    assert acc == summary["accounting"]
    assert acc["lost"] == 0 and acc["outcome_conflicts"] == 0
    parts = ("trained", "stale", "expired", "rejected", "in_flight_at_end", "lost")
    assert acc["generated"] == sum(acc[k] for k in parts) > 0
    assert acc["trained"] == summary["trajectories"]  # every trained one, once
    assert acc["workers"]["worker-0"]["generated"] == acc["generated"]


def test_the_audits_match_the_counts(finished):
    out, summary = finished
    acc = summary["accounting"]
    joined = [json.loads(x) for x in (out / "audit.jsonl").read_text().splitlines()]
    assert len({x["id"] for x in joined}) == len(joined) == acc["generated"] + acc["outside_spools"]
    by_outcome = Counter(x["outcome"] for x in joined)
    for key in ("trained", "stale", "expired", "rejected", "in_flight_at_end"):
        assert by_outcome.get(key, 0) == acc[key], key
    learner = read_audit(out / "audit" / "learner.jsonl")
    assert sum(x["outcome"] == "trained" for x in learner) == acc["trained"]
    assert sum(x["outcome"] == "duplicate" for x in learner) == acc["duplicates_ignored"]
    steps = {x["step"] for x in learner if x["outcome"] == "trained"}
    assert steps == {1, 2, 3, 4}
    spooled = json.loads((out / "audit" / "learner_in_flight.json").read_text())
    assert len(spooled["buffered"]) + len(spooled["taken"]) <= acc["in_flight_at_end"]
    worker = next(w for w in summary["rollout_workers"] if w.get("worker_id") == "worker-0")
    assert worker["spool_spooled"] == acc["generated"] and worker["restarted"] is False
