"""The learner's bookkeeping is bounded in the length of the run, and exactly-once still holds.

The buffer's seen ids, its closed groups and the ledger's decided ids keep only the last
`max_staleness + forget_margin` versions; counts stay exact; an id that was forgotten and comes
back is refused as stale by its version (never trained twice) and marked `maybe_duplicate` for
the audit report; step records keep a bounded tail; a resume checkpoint after 4N steps is not
bigger than after N, and still restores the learner."""

from __future__ import annotations

import io
import types

import pytest
import torch
from test_trainer import tiny_model

from rewardloop.config import load_config
from rewardloop.learner.accounting import Ledger, read_audit
from rewardloop.learner.buffer import TrajectoryBuffer
from rewardloop.learner.durability import learner_state
from rewardloop.learner.recent_ids import NEVER, RecentIds
from rewardloop.learner.service import LearnerService
from rewardloop.learner.step_log import StepLog
from rewardloop.trajectory import Trajectory

TOKENIZER = types.SimpleNamespace(pad_token_id=0, eos_token_id=0)


def _traj(tid: str, group: str, version: int, size: int) -> Trajectory:
    return Trajectory(
        tid, group, [3, 4, 5], [7, 2, 0], [-1.0, -1.5, -0.5], 1.0, version, "w0", size
    )


def _one_version(buf: TrajectoryBuffer, ledger: Ledger, v: int, gps: int, g: int) -> list:
    """At version v: `gps` fresh groups of `g`, one trajectory too old (refused stale, as ingest
    does), the oldest complete groups taken and trained. Returns what was trained."""
    for k in range(gps):
        gid = f"v{v}-g{k}"
        for i in range(g):
            assert buf.add(_traj(f"{gid}-{i}", gid, v, g), v)[0] == "accepted"
    late = _traj(f"v{v}-late", f"v{v}-late", v - buf.max_staleness - 1, 1)
    status, reason = buf.add(late, v)
    assert status == "rejected" and "too stale" in reason
    assert ledger.reject(late.id, reason, "w0", v)
    groups = buf.take_groups(gps, v, timeout_s=1.0)
    flat = [t for grp in groups for t in grp]
    ledger.trained(flat, v, v + 1)
    return flat


@pytest.mark.parametrize("max_staleness", [0, 1, 3])
def test_id_structures_stay_bounded_while_counts_stay_exact(max_staleness):
    gps, g = 2, 4
    ledger = Ledger()
    buf = TrajectoryBuffer(64, max_staleness=max_staleness, ledger=ledger)
    n = 2 * (max_staleness + buf.forget_margin)  # N versions: well past the window
    # ids of the versions still remembered, each version: gps x g trained (+ 1 late refusal)
    bound = (max_staleness + buf.forget_margin + 1) * (gps * g + 1)
    sizes = {}
    for v in range(4 * n):
        _one_version(buf, ledger, v, gps, g)
        if v + 1 in (n, 4 * n):
            stats = buf.stats()
            sizes[v + 1] = (
                stats["ids_remembered"],
                stats["groups_remembered"],
                ledger.remembered(),
            )
    for ids, groups, decided in sizes.values():
        assert 0 < ids <= bound and 0 < decided <= bound and 0 < groups <= bound
    assert sizes[4 * n] == sizes[n]  # the same after 4N versions as after N: not growing
    counts = ledger.counts()
    assert counts["trained"] == 4 * n * gps * g and counts["stale"] == 4 * n
    assert counts["duplicates_ignored"] == counts["conflicts"] == counts["maybe_duplicates"] == 0


def test_a_recent_resend_is_a_duplicate_and_a_forgotten_one_is_refused_stale(tmp_path):
    ledger = Ledger(tmp_path)
    buf = TrajectoryBuffer(64, max_staleness=1, ledger=ledger)
    first = _one_version(buf, ledger, 0, 1, 2)
    x = first[0]
    assert buf.add(x, 1) == ("duplicate", "")  # still remembered: a duplicate
    assert ledger.decided(x.id)
    forget_at = buf.max_staleness + buf.forget_margin + 1  # the first version whose horizon > 0
    for v in range(1, forget_at + 1):
        _one_version(buf, ledger, v, 1, 2)
    assert not ledger.decided(x.id) and x.id not in buf.held_ids()  # forgotten everywhere
    status, reason = buf.add(x, forget_at)  # the same trajectory re-sent, long after
    assert status == "rejected" and "too stale" in reason  # by its version: never admitted
    assert ledger.reject(x.id, reason, "w0", forget_at)
    assert buf.take_groups(1, forget_at, timeout_s=0.0) is None  # nothing to train it in
    counts = ledger.counts()
    assert counts["trained"] == (forget_at + 1) * 2 and counts["maybe_duplicates"] == 1
    lines = [x_ for x_ in read_audit(tmp_path / "learner.jsonl") if x_["id"] == x.id]
    assert [line["outcome"] for line in lines] == ["trained", "stale"]
    assert lines[1]["maybe_duplicate"] is True and "maybe_duplicate" not in lines[0]
    # a refusal of an id young enough to be remembered is not marked
    fresh = [x_ for x_ in read_audit(tmp_path / "learner.jsonl") if x_["id"].endswith("-late")]
    assert not any(line.get("maybe_duplicate") for line in fresh)


def test_step_log_counts_every_step_and_keeps_a_tail():
    log = StepLog(keep=4)
    for step in range(1, 11):
        log.append({"step": step})
    assert len(log) == 10 and log.first_kept == 6
    assert log[-1] == {"step": 10} and log[6] == {"step": 7}
    assert [r["step"] for r in log[8:]] == [9, 10]  # metrics_since(8): steps 9 and 10
    assert [r["step"] for r in log[0:]] == [7, 8, 9, 10] and log[10:] == []
    assert [r["step"] for r in log] == [7, 8, 9, 10]
    with pytest.raises(IndexError):
        log[2]
    again = StepLog(keep=4)
    again.load_state(log.state())
    assert len(again) == 10 and list(again) == list(log)
    again.load_state([{"step": i} for i in range(1, 8)])  # an older checkpoint's full list
    assert len(again) == 7 and [r["step"] for r in again] == [4, 5, 6, 7]


def test_recent_ids_forget_by_version_and_old_checkpoints_forget_nothing():
    ids = RecentIds()
    for v in range(6):
        ids.add(f"a{v}", v)
    assert ids.forget_below(3) == 3 and sorted(ids) == ["a3", "a4", "a5"]
    assert ids.forget_below(2) == 0  # the horizon only rises
    ids.add("late", 1)  # below the horizon: refused by version anyway, not kept
    assert "late" not in ids and ids.may_have_forgotten(1) and not ids.may_have_forgotten(3)
    back = RecentIds.from_state(ids.state())
    assert sorted(back) == ["a3", "a4", "a5"] and back.horizon == 3
    legacy = RecentIds.from_state({"x", "y"})  # a plain set: a checkpoint from before
    legacy.forget_below(10**6)
    assert sorted(legacy) == ["x", "y"] and NEVER > 10**6


def _bookkeeping_bytes(svc) -> int:
    state = learner_state(svc)
    buf = io.BytesIO()
    torch.save({k: v for k, v in state.items() if k not in ("model", "trainer", "rng")}, buf)
    return buf.tell()


def test_checkpoint_after_4n_steps_is_no_bigger_than_after_n_and_restores(tmp_path):
    torch.set_num_threads(1)
    cfg = load_config(
        None,
        ["rollout.group_size=4", "learner.groups_per_step=2", "learner.max_staleness=1"],
    )
    svc = LearnerService(cfg, tiny_model(), TOKENIZER, resume_dir=str(tmp_path / "resume"))
    svc.metrics = StepLog(keep=8)  # a short tail and id window, so N steps are well past them
    svc.buffer.forget_margin = 2
    n, sizes = 24, {}
    for step in range(1, 4 * n + 1):
        v = svc.version
        flat = _one_version_service(svc, v)
        assert len(flat) == 8
        if step in (n, 4 * n):
            svc.checkpoints.save(svc)
            sizes[step] = (svc.checkpoints.store.latest()[1]["bytes"], _bookkeeping_bytes(svc))
    (total_n, book_n), (total_4n, book_4n) = sizes[n], sizes[4 * n]
    assert book_4n <= 1.1 * book_n and total_4n <= 1.05 * total_n, sizes

    back = LearnerService(cfg, tiny_model(), TOKENIZER, resume_dir=str(tmp_path / "resume"))
    back.metrics = StepLog(keep=8)
    back.buffer.forget_margin = 2
    restored = back.restore_latest()
    assert restored["step"] == 4 * n and back.version == svc.version
    assert back.metrics[-1]["step"] == 4 * n and [r["step"] for r in back.metrics[4 * n - 2 :]] == [
        4 * n - 1,
        4 * n,
    ]
    assert back.ledger.counts() == svc.ledger.counts()
    v = back.version
    recent, old = f"v{v - 1}-g0-0", "v0-g0-0"
    assert back.buffer.add(_traj(recent, f"v{v - 1}-g0", v - 1, 4), v)[0] == "duplicate"
    status, reason = back.buffer.add(_traj(old, "v0-g0", 0, 4), v)
    assert status == "rejected" and "too stale" in reason  # forgotten, and refused by version


def _one_version_service(svc, v: int) -> list:
    """`_one_version` through the service: its buffer, its ledger, a real optimizer step."""
    g, gps = svc.cfg.rollout.group_size, svc.cfg.learner.groups_per_step
    for k in range(gps):
        gid = f"v{v}-g{k}"
        for i in range(g):
            t = _traj(f"{gid}-{i}", gid, v, g)
            t.reward = float(i % 2)
            assert svc.buffer.add(t, v)[0] == "accepted"
    groups = svc.buffer.take_groups(gps, v, timeout_s=1.0)
    svc._record(groups, 0.0)
    return [t for grp in groups for t in grp]


def test_the_learner_state_bench_runs_and_its_id_figures_do_not_grow():
    from rewardloop.bench import learner_state

    data = learner_state.main(["--at", "8,32", "--forget-margin", "2"])  # a window of 4 versions
    assert [r["step"] for r in data["rows"]] == [8, 32] and data["steps_ratio"] == 4
    growth = data["growth_last_over_first"]
    assert growth["buffer_seen_ids"] == growth["ledger_decided_ids"] == 1.0, data["rows"]
