"""The rollout worker's spool: what it holds after a real SIGKILL, compaction, torn lines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np

from rewardloop.actors.spool import JOURNAL, Spool, read_journal
from rewardloop.actors.spooled_sink import SpooledSink
from rewardloop.sink import ListSink
from rewardloop.trajectory import RewardPart, Trajectory


def _traj(i: int, group: str = "g") -> Trajectory:
    return Trajectory(
        id=f"t{i}",
        group_id=group,
        prompt_ids=[1, 2, 3],
        completion_ids=[4, 5, i % 50],
        behavior_logprobs=[-0.5, -0.25, -1.0],
        reward=float(i),
        policy_version=i // 10,
        worker_id="w",
        group_size=2,
        prompt_key="k",
        reward_parts=[RewardPart("persona", float(i))],
    )


def test_unacked_round_trip_with_every_field(tmp_path):
    spool = Spool(tmp_path / "w", segment_trajectories=4)
    trajs = [_traj(i) for i in range(10)]
    assert [t.id for t in spool.append(trajs)] == [t.id for t in trajs]
    assert spool.append(trajs[:3]) == []  # already spooled: not twice
    spool.acked(["t0", "t1", "t2", "t3", "t7"])
    spool.close()
    again = Spool(tmp_path / "w", segment_trajectories=4)
    back = again.unacked()
    assert [t.id for t in back] == ["t4", "t5", "t6", "t8", "t9"]
    t5 = back[1]
    assert t5.reward == 5.0 and t5.policy_version == 0 and t5.group_size == 2
    assert np.array_equal(t5.completion_ids, [4, 5, 5]) and t5.reward_parts[0].value == 5.0
    assert again.stats["found_unacked"] == 5


def test_finished_segments_are_deleted_once_acked(tmp_path):
    spool = Spool(tmp_path / "w", segment_trajectories=4)
    for start in range(0, 40, 4):
        batch = [_traj(i) for i in range(start, start + 4)]
        spool.append(batch)
        spool.acked([t.id for t in batch])
    segments = list((tmp_path / "w").glob("seg-*.jsonl"))
    assert len(segments) <= 1  # only the one being written: disk stays flat
    journal = read_journal(tmp_path / "w")
    assert len(journal["sent"]) == 40 and journal["acked"] == set(journal["sent"])


def test_dropped_by_the_worker_are_journaled(tmp_path):
    sink = SpooledSink(ListSink(), Spool(tmp_path / "w"))
    sink.dropped([("x1", "expired", "rating: expired before it came")])
    result = sink.send([_traj(1), _traj(2)])
    assert result.n_accepted == 2
    journal = read_journal(tmp_path / "w")
    assert journal["dropped"] == {"x1": ("expired", "rating: expired before it came")}
    assert journal["acked"] == {"t1", "t2"} and sink.spool.unacked_ids == []


_WRITER = textwrap.dedent(
    """
    import sys
    from rewardloop.actors.spool import Spool
    from rewardloop.trajectory import Trajectory
    spool = Spool(sys.argv[1], segment_trajectories=8)
    i = 0
    while True:
        batch = [
            Trajectory(f"t{i + k}", "g", [1, 2], [3] * 40, [-0.5] * 40, 1.0, 0, "w", 2)
            for k in range(3)
        ]
        spool.append(batch)
        spool.acked([batch[0].id])  # one of each three acked
        i += 3
        if i == 30:
            print("ready", flush=True)
    """
)


def test_a_sigkilled_writer_leaves_every_unacked_trajectory_readable(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path / "w")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 30
        # let it write on for a while (killed mid-write, somewhere), then kill it
        while (tmp_path / "w" / JOURNAL).stat().st_size < 40_000:
            assert time.monotonic() < deadline, "the writer wrote too little"
            time.sleep(0.01)  # polling the file's size, with a deadline
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    journal = read_journal(tmp_path / "w")
    sent, acked = journal["sent"], journal["acked"]
    assert len(sent) >= 30
    reopened = Spool(tmp_path / "w", segment_trajectories=8)
    back = {t.id for t in reopened.unacked()}
    assert back == set(sent) - acked  # every unacked id has its payload, no acked one
    assert len(back) >= 20  # two of each three were never acked
    # the reopened spool appends cleanly after the torn tail
    reopened.append([_traj(10_000)])
    assert "t10000" in read_journal(tmp_path / "w")["sent"]
    for line in (tmp_path / "w" / JOURNAL).read_bytes().splitlines()[:-2]:
        json.loads(line)  # only the torn line (if any) is unreadable


def test_answered_ids_are_held_until_that_learner_process_says_they_are_durable(tmp_path):
    spool = Spool(tmp_path / "w", segment_trajectories=2)
    spool.append([_traj(i) for i in range(6)])
    spool.answered(["t0", "t1", "t2", "t3"], "a", 5)
    spool.durable("a", 5)  # a checkpoint at 5 covers answers below 5 only
    spool.durable("b", 9)  # another process's checkpoint covers nothing "a" answered
    assert spool.unacked_ids == [f"t{i}" for i in range(6)]
    assert spool.orphans("a") == [] and spool.orphans("b") == ["t0", "t1", "t2", "t3"]
    spool.close()
    again = Spool(tmp_path / "w", segment_trajectories=2)  # a restarted worker
    assert [t.id for t in again.unacked()] == [f"t{i}" for i in range(6)]  # all re-sent
    assert again.stats["found_answered"] == 4
    again.answered(["t0", "t1"], "a", 7)  # re-sent to the same process: its first answer counts
    assert again.durable("a", 6) == 4  # t0..t3, answered at 5
    assert again.unacked_ids == ["t4", "t5"] and len(list((tmp_path / "w").glob("seg-*"))) == 1
    journal = read_journal(tmp_path / "w")
    assert journal["durable"] == {"a": 6, "b": 9} and journal["acked"] == {"t0", "t1", "t2", "t3"}
    assert set(journal["answers"]) == {"t0", "t1", "t2", "t3"}


def test_an_answer_without_a_learner_process_is_final_and_retain_bounds_the_rest(tmp_path):
    spool = Spool(tmp_path / "w", segment_trajectories=4, retain_acked=3)
    spool.append([_traj(i) for i in range(8)])
    spool.answered(["t0"], "", 0)  # a sink that names no learner process: done now
    spool.answered(["t1", "t2", "t3", "t4", "t5"], "a", 0)  # more than retain_acked = 3
    assert spool.stats["released"] == 2 and spool.answered_held == 3
    assert spool.unacked_ids == ["t3", "t4", "t5", "t6", "t7"]  # the oldest answered went
    assert read_journal(tmp_path / "w")["released"] == {"t1", "t2"}
    spool.close()
    assert Spool(tmp_path / "w").unacked_ids == ["t3", "t4", "t5", "t6", "t7"]


def test_a_long_run_keeps_the_spool_flat_as_checkpoints_go_by(tmp_path):
    """6,000 trajectories, 30 a step, a learner checkpoint every 5 steps: the payloads on disk
    stay within one checkpoint interval's worth plus two segments, however long it runs."""
    spool = Spool(tmp_path / "w", segment_trajectories=64)
    peak_segments, peak_bytes = 0, 0
    for step in range(200):
        trajs = [_traj(step * 30 + k) for k in range(30)]
        spool.append(trajs)
        spool.answered([t.id for t in trajs], "a", step)  # answered at version `step`
        if step % 5 == 4:
            spool.durable("a", step + 1)  # the checkpoint after this step
        disk = spool.disk_bytes()
        peak_segments = max(peak_segments, disk["segments"])
        peak_bytes = max(peak_bytes, disk["segment_bytes"])
        assert spool.answered_held <= 5 * 30
    assert peak_segments <= -(-5 * 30 // 64) + 2  # 5 segments of 64
    assert spool.stats["durable"] == 6000 and spool.stats["released"] == 0
    assert peak_bytes < 5 * 64 * 400  # about 300 bytes a trajectory here
