"""A rollout worker and the learner SIGKILLed together on a real local Ray: nothing is lost.

The learner comes back from its last resume checkpoint, without what it acked since; the worker
that had those acks comes back too, and only its spool still has them (actors/spool.py holds
an answered trajectory until the learner's checkpoint covers it). Both processes are frozen
(SIGSTOP) once the worker's spool holds answers the learner's newest checkpoint cannot have
(answered at a version above the checkpoint's), then SIGKILLed within microseconds of each
other. The run must finish with `lost == 0`, those trajectories trained exactly once, and no
id trained twice in the audit.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import threading
import time

from run_testutil import execute_with_fault

from rewardloop.actors.spool import read_journal, spool_root
from rewardloop.cluster.resume import resume_root
from rewardloop.config import load_config
from rewardloop.learner.accounting import read_audit
from rewardloop.learner.resume_state import ResumeStore

STEPS = 20  # room after the kill: the restarted learner trains what the dead one lost


def _held_answers(worker_dir, incarnation: str) -> dict[str, int]:
    """{id: version} the spool holds, answered by `incarnation` and not known durable."""
    journal = read_journal(worker_dir)
    durable = journal["durable"].get(incarnation, 0)
    return {
        tid: v
        for tid, (inc, v) in journal["answers"].items()
        if inc == incarnation and v >= durable and tid not in journal["released"]
    }


def test_a_worker_and_the_learner_killed_together_lose_nothing(model_cache, ray_local, tmp_path):
    from rewardloop.cluster.run import Run

    ray = ray_local
    cfg = load_config(
        None,
        [
            f"model.cache_dir={model_cache}",
            f"learner.max_steps={STEPS}",
            "learner.checkpoint_every_steps=5",  # acks pile up between checkpoints
            "eval.every_steps=0",
            "eval.samples_per_prompt=2",
            "eval.target=0",
            "rollout.num_workers=1",
            f"out={tmp_path}",
        ],
    )
    run = Run(cfg, progress=False)
    killed: dict = {}
    failed: list[BaseException] = []
    done = threading.Event()

    def freeze_and_kill() -> None:  # polls the run's state, with a deadline
        deadline = time.monotonic() + 300
        while not done.is_set():
            assert time.monotonic() < deadline, "no moment with answers past a checkpoint"
            if len(run.steps) < 6:  # past the first checkpoint (step 5)
                done.wait(0.2)
                continue
            # the kill must leave the restarted learner steps to train (what this test is
            # about); a kill after the last step restores the checkpoint the learner writes
            # before it reports done (test_resume_state.py)
            if run.calls("status")["steps"] > STEPS - 3:
                raise AssertionError("no moment with answers past a checkpoint in time")
            worker_id, actor, _ = run.pool.workers[0]
            worker_pid = ray.get(actor.pid.remote(), timeout=60)
            info = run.calls("incarnation")
            os.kill(info["pid"], signal.SIGSTOP)  # frozen: its newest checkpoint is final
            os.kill(worker_pid, signal.SIGSTOP)  # and the worker's spool too
            latest = ResumeStore(resume_root(cfg)).latest()
            held = _held_answers(spool_root(run.cfg) / worker_id, info["incarnation"])
            if latest is not None:
                lost_with_learner = {t for t, v in held.items() if v > latest[1]["version"]}
                if lost_with_learner:
                    t0 = time.perf_counter()
                    os.kill(worker_pid, signal.SIGKILL)
                    os.kill(info["pid"], signal.SIGKILL)
                    killed.update(
                        gap_ms=(time.perf_counter() - t0) * 1000,
                        worker=worker_id,
                        worker_pid=worker_pid,
                        learner_pid=info["pid"],
                        held=set(held),
                        lost_with_learner=lost_with_learner,
                        checkpoint=latest[1],
                    )
                    return
            os.kill(worker_pid, signal.SIGCONT)
            os.kill(info["pid"], signal.SIGCONT)
            before = len(run.steps)
            while len(run.steps) == before and time.monotonic() < deadline:
                done.wait(0.2)  # one more step, then look again

    def killer() -> None:
        try:
            freeze_and_kill()
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test
            failed.append(exc)

    thread = threading.Thread(target=killer, daemon=True)
    summary = execute_with_fault(run, thread, done)
    thread.join(timeout=10)
    if failed:
        raise failed[0]
    assert killed, "the worker and the learner were never killed"
    assert summary["error"] == "" and summary["steps"] == STEPS, summary["error"]
    acc = summary["accounting"]
    assert acc["lost"] == 0 and acc["outcome_conflicts"] == 0, acc  # was 24 (issue 12)
    (restart,) = summary["learner_restarts"]
    assert restart["pid"] != killed["learner_pid"]
    assert restart["resumed_step"] == killed["checkpoint"]["step"]
    assert summary["worker_restarts"]["used"] == {killed["worker"]: 1}
    (worker,) = [w for w in summary["rollout_workers"] if w.get("worker_id") == killed["worker"]]
    assert worker["restarted"] is True
    assert worker["spool_found_unacked"] >= len(killed["held"])
    assert worker["spool_resent"] >= len(killed["held"])
    parts = ("trained", "stale", "expired", "rejected", "in_flight_at_end", "lost")
    assert acc["generated"] == sum(acc[k] for k in parts)
    joined = {}
    for line in (tmp_path / "audit.jsonl").read_text().splitlines():
        record = json.loads(line)
        joined[record["id"]] = record
    # what only the dead worker's spool still had: each ends in one outcome from the learner
    for tid in killed["lost_with_learner"]:
        assert joined[tid]["source"] == "learner", joined[tid]
    audit = read_audit(tmp_path / "audit" / "learner.jsonl")
    trained = collections.Counter(x["id"] for x in audit if x["outcome"] == "trained")
    assert [t for t, n in trained.items() if n > 1] == []  # none trained twice
    assert sum(trained.values()) == acc["trained"]
    assert acc["trained"] == STEPS * cfg.learner.groups_per_step * cfg.rollout.group_size
    print(
        "\nkilled together:",
        json.dumps(
            {
                "gap_ms": round(killed["gap_ms"], 3),
                "held_at_kill": len(killed["held"]),
                "lost_with_learner": len(killed["lost_with_learner"]),
                "resent": worker["spool_resent"],
                "resent_duplicate": worker["spool_resent_duplicate"],
                "spool_segment_bytes_at_end": worker.get("spool_segment_bytes"),
                "accounting": {k: acc[k] for k in (*parts, "duplicates_ignored")},
            }
        ),
    )
