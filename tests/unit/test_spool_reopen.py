"""Reopening a long-lived spool (a restarted worker) costs memory for what is held, not for every
id the journal has: the journal is replayed line by line (actors/spool_replay.py), and the
result is the one the whole journal read at once gives (`read_journal`, the driver's report)."""

from __future__ import annotations

import gc
import tracemalloc

from rewardloop.actors.spool import JOURNAL, Spool, read_journal
from rewardloop.actors.spool_replay import covered, replay
from rewardloop.trajectory import Trajectory

BATCH = 24  # one learner step's worth (3 groups of 8, as `rewardloop chaos` runs)
CHECKPOINT_EVERY = 10  # learner.checkpoint_every_steps: durable moves on every 10 versions
RETAIN = 4096


def _traj(tid: str, version: int) -> Trajectory:
    return Trajectory(
        id=tid,
        group_id=f"g-{tid}",
        prompt_ids=[1, 2, 3],
        completion_ids=[4, 5],
        behavior_logprobs=[-0.5, -0.25],
        reward=1.0,
        policy_version=version,
        worker_id="w",
        group_size=1,
    )


def _live(directory, steps: int, start: int = 0, incarnation: str = "a") -> list[str]:
    """A worker's spool through `steps` learner steps: send, answer, a checkpoint every
    CHECKPOINT_EVERY steps; the last batch is left unanswered (the worker dies there)."""
    spool = Spool(directory, retain_acked=RETAIN)
    last: list[str] = []
    for step in range(start, start + steps):
        last = [f"{incarnation}{step}-{i}" for i in range(BATCH)]
        spool.append([_traj(t, step) for t in last])
        if step < start + steps - 1:
            spool.answered(last, incarnation, step)
            if step % CHECKPOINT_EVERY == 0:
                spool.durable(incarnation, step)
    held = spool.unacked_ids
    spool.close()
    return held


def _held_by_full_read(directory) -> set[str]:
    """What the whole journal says is held (the rule the spool applied before the replay)."""
    found = read_journal(directory)
    return {
        t
        for t in found["sent"]
        if t not in found["dropped"]
        and t not in found["released"]
        and not (t in found["acked"] and covered(found["answers"].get(t), found["durable"]))
    }


def _reopen_peak(directory) -> tuple[Spool, int]:
    gc.collect()
    tracemalloc.start()
    try:
        spool = Spool(directory, retain_acked=RETAIN)
        return spool, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_reopening_holds_what_a_checkpoint_interval_left_whatever_the_journal_length(tmp_path):
    peaks, held = {}, {}
    for steps in (250, 1000):
        directory = tmp_path / f"w{steps}"
        left = _live(directory, steps)
        replayed = replay(directory / JOURNAL, RETAIN)
        # bounded by the config: at most a checkpoint interval of answered batches plus the
        # unanswered one are ever held while replaying, not the `steps * BATCH` ids sent
        assert replayed.peak_held <= (CHECKPOINT_EVERY + 1) * BATCH
        assert replayed.spooled == steps * BATCH and replayed.acked == (steps - 1) * BATCH
        spool, peaks[steps] = _reopen_peak(directory)
        held[steps] = spool.unacked_ids
        assert set(held[steps]) == set(left) == _held_by_full_read(directory)
        assert spool.stats["spooled"] == steps * BATCH
        assert spool.stats["found_unacked"] == len(left)
        # the restarted worker re-sends what is held, payloads intact
        assert [t.id for t in spool.unacked()] == left
        spool.close()
    assert len(held[1000]) == len(held[250])
    # 4x the journal, not 4x the memory (reading it whole took ~75 MiB at 185,000 ids)
    assert peaks[1000] < 2 * peaks[250]


def test_a_reopened_spool_goes_on_where_the_dead_one_stopped(tmp_path):
    """A second process answers what the first left, from a new learner process: the ids the
    first's learner answered after its last checkpoint are orphans, sent again."""
    directory = tmp_path / "w"
    _live(directory, 35)  # durable at 30: steps 30..33 answered, not durable; 34 unanswered
    spool = Spool(directory, retain_acked=RETAIN)
    orphans = spool.orphans("b")
    assert orphans == [f"a{s}-{i}" for s in range(30, 34) for i in range(BATCH)]
    assert spool.answered_held == len(orphans)
    spool.answered(spool.unacked_ids, "b", 0)
    assert spool.durable("b", 1) == len(orphans) + BATCH
    assert spool.unacked_ids == []
    spool.close()
    assert replay(directory / JOURNAL, RETAIN).held == {}
