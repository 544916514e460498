"""Rollout workers SIGKILLed mid-run on a real local Ray (2 CPUs): restarted, nothing lost.

The first test catches a worker with a batch the learner admitted but whose ack the worker never
recorded: the learner is stopped (SIGSTOP) so that a worker's send waits for its ack, that
worker is frozen, the learner goes on and trains the batch, and the frozen worker is SIGKILLed.
Its spool says "sent, not acked"; Ray restarts it, it re-sends, and the learner ignores the
duplicates. The run finishes with the other worker meanwhile, and its accounting loses nothing.
The second kills one worker twice with rollout.max_restarts=1: the run stops, naming it.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from rewardloop.actors.spool import read_journal, spool_root
from rewardloop.config import load_config
from rewardloop.errors import RewardLoopError
from rewardloop.learner.accounting import read_audit

FAST = [
    "eval.every_steps=0",
    "eval.samples_per_prompt=2",
    "eval.target=0",
    "cluster.rollout_resources={CPU: 0.5}",  # two workers and the learner on 2 CPUs
    "rollout.prompts_per_generation=1",
]


def _cfg(model_cache, out, *extra):
    return load_config(None, [f"model.cache_dir={model_cache}", f"out={out}", *FAST, *extra])


def _until(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)  # polling a condition with a deadline


def _faulty_run(cfg, fault, background: bool = False):
    """A `Run` that calls `fault(run)` once it is training; `execute()` does the rest. With
    `background`, the fault runs on a thread while the driver watches, and the run ends (as
    at max_steps) once the fault returns; `run.fault_error` holds what it raised."""
    from rewardloop.cluster.run import Run

    class FaultyRun(Run):
        fault_error: BaseException | None = None
        fault_done = threading.Event()

        def launch(self) -> None:
            super().launch()
            if not background:
                fault(self)
                return
            threading.Thread(target=self._fault, daemon=True).start()

        def _fault(self) -> None:
            try:
                fault(self)
            except BaseException as exc:  # noqa: BLE001 - re-raised by the test
                self.fault_error = exc
            finally:
                self.fault_done.set()

        def _poll_once(self, bar) -> bool:
            return super()._poll_once(bar) or (background and self.fault_done.is_set())

    return FaultyRun(cfg, progress=False)


def _unacked(root, worker_id: str) -> set[str]:
    journal = read_journal(root / worker_id)
    return set(journal["sent"]) - journal["acked"]


def _steps(run, ray) -> int:
    return ray.get(run.learner.status.remote(), timeout=60)["steps"]


def test_a_killed_worker_is_restarted_and_resends_what_was_never_acked(
    model_cache, ray_local, tmp_path
):
    ray = ray_local
    # one group per step: the frozen worker's group is trained however many credits it holds
    cfg = _cfg(
        model_cache,
        tmp_path,
        "rollout.num_workers=2",
        "learner.max_steps=100000",  # the run ends once the fault is done (see _faulty_run)
        "learner.groups_per_step=1",
        "learner.max_staleness=2",
    )
    seen: dict = {}

    def fault(run):
        _until(lambda: _steps(run, ray) >= 1, 60, "a first step")
        learner_pid = ray.get(run.learner.incarnation.remote(), timeout=60)["pid"]
        pids = {w: ray.get(a.pid.remote(), timeout=60) for w, a, _ in run.pool.workers}
        root = spool_root(run.cfg)
        audit = run.out / "audit" / "learner.jsonl"
        attempts = time.monotonic() + 240
        while True:
            victim, unacked = _freeze_a_sender(run, ray, root, learner_pid, pids)
            # the learner admits and trains the frozen worker's batch; its ack is never read
            trained = lambda u=unacked: any(x["id"] in u for x in read_audit(audit))  # noqa: E731
            if _within(trained, 45):
                break
            # frozen between its spool's "sent" and the bytes leaving: let it go, pick again
            os.kill(pids[victim], signal.SIGCONT)
            assert time.monotonic() < attempts, "no frozen worker's batch reached the learner"
        os.kill(pids[victim], signal.SIGKILL)
        seen.update(victim=victim, unacked=unacked, steps_at_kill=_steps(run, ray))
        # the driver sees the death, Ray restarts the worker, and it re-sends from its spool
        _until(lambda: not unacked & _unacked(root, victim), 120, "the re-send answered")

    run = _faulty_run(cfg, fault, background=True)
    summary = run.execute()
    if run.fault_error is not None:
        raise run.fault_error
    victim, unacked = seen["victim"], seen["unacked"]
    assert summary["error"] == "" and summary["steps"] > seen["steps_at_kill"]
    restarts = summary["worker_restarts"]
    assert restarts["used"] == {victim: 1} and restarts["deaths"][0]["worker_id"] == victim
    workers = {w["worker_id"]: w for w in summary["rollout_workers"] if "worker_id" in w}
    assert workers[victim]["restarted"] is True
    assert workers[victim]["spool_found_unacked"] >= len(unacked)
    assert workers[victim]["spool_resent"] >= len(unacked)
    # the batch the learner had trained came back: a duplicate while the learner remembers its
    # ids, else (past max_staleness + forget_margin versions) refused stale by its version and
    # marked maybe_duplicate (learner/recent_ids.py); never trained again, a duplicate below
    answers = read_audit(tmp_path / "audit" / "learner.jsonl")
    assert any(
        x["id"] in unacked and (x["outcome"] == "duplicate" or x.get("maybe_duplicate"))
        for x in answers
    )
    acc = summary["accounting"]
    assert acc["lost"] == 0 and acc["outcome_conflicts"] == 0
    parts = ("trained", "stale", "expired", "rejected", "in_flight_at_end", "lost")
    assert acc["generated"] == sum(acc[k] for k in parts)
    assert acc["duplicates_ignored"] >= 1  # at least the batch the learner had trained
    assert acc["workers"][victim]["duplicates_ignored"] >= 1
    joined = {}
    for line in (tmp_path / "audit.jsonl").read_text().splitlines():
        record = json.loads(line)
        joined[record["id"]] = record
    assert all(joined[tid]["outcome"] != "lost" for tid in unacked)
    learner = read_audit(tmp_path / "audit" / "learner.jsonl")
    trained = [x["id"] for x in learner if x["outcome"] == "trained"]
    assert len(trained) == len(set(trained)) == acc["trained"]  # none trained twice
    events = [
        json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines() if "event" in x
    ]
    assert any(e.get("event") == "worker_died" and e["worker_id"] == victim for e in events)


def _freeze_a_sender(run, ray, root, learner_pid: int, pids: dict) -> tuple[str, set]:
    """Freeze the learner, wait for a worker to send (spooled, unacked), freeze that worker too
    so it never records the ack, then let the learner go on: (worker, its unacked ids)."""
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline, "no worker sent while the learner was stopped"
        os.kill(learner_pid, signal.SIGSTOP)  # acks stop: a send now waits for its ack
        try:
            found = _poll_for_unacked(root, pids, 8.0)
            if found:
                os.kill(pids[found], signal.SIGSTOP)  # it can never record the ack now
                unacked = _unacked(root, found)
                if unacked:
                    return found, unacked
                os.kill(pids[found], signal.SIGCONT)  # its ack came in just before it froze
        finally:
            os.kill(learner_pid, signal.SIGCONT)
        before = _steps(run, ray)  # nobody had credits: let the learner run a moment, again
        _until(lambda b=before: _steps(run, ray) > b, 60, "another step")


def _within(condition, timeout_s: float) -> bool:
    """Poll `condition` until it holds (True) or `timeout_s` passes (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)  # polling a condition with a deadline
    return False


def _poll_for_unacked(root, pids: dict, timeout_s: float) -> str | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for worker_id in pids:
            if _unacked(root, worker_id):
                return worker_id
        time.sleep(0.01)  # polling the spools, with a deadline
    return None


def _pid(ray, actor) -> int | None:
    try:
        return ray.get(actor.pid.remote(), timeout=120)
    except ray.exceptions.RayActorError:  # sent before Ray saw the death: ask again
        return None


def test_a_worker_that_dies_past_its_restarts_stops_the_run_naming_it(
    model_cache, ray_local, tmp_path
):
    ray = ray_local
    cfg = _cfg(
        model_cache,
        tmp_path,
        "rollout.num_workers=1",
        "rollout.max_restarts=1",
        "learner.max_steps=200",
    )

    def fault(run):
        _, actor, _ = run.pool.workers[0]
        first = ray.get(actor.pid.remote(), timeout=60)
        os.kill(first, signal.SIGKILL)
        # Ray restarts it (restart 1 of 1); a call made meanwhile waits for the new process
        second = _until(lambda: _pid(ray, actor), 120, "the restart")
        assert second != first
        os.kill(second, signal.SIGKILL)

    run = _faulty_run(cfg, fault)
    with pytest.raises(RewardLoopError, match="worker-0") as info:
        run.execute()
    message = str(info.value)
    assert "after 1 restart(s)" in message and "rollout.max_restarts=1" in message
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["worker_restarts"]["used"] == {"worker-0": 1}
    assert len(summary["worker_restarts"]["deaths"]) == 2
    assert summary["accounting"]["lost"] == 0  # what it had sent before dying is accounted
