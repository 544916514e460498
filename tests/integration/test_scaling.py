"""Scaling rollout workers while a run trains, through the real CLI in subprocesses.

`rewardloop train` runs in one process (embedded Ray, 4 logical CPUs); `rewardloop scale`
takes it from 1 to 3 to 2 workers, `rewardloop stop` ends it. metrics.jsonl must show the
worker count of every step in that order and the two scale events, the retired worker must have
sent everything it generated before it exited, and every trajectory must be accounted for.
A second test lets `rollout.autoscale` add a worker because the learner waits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from itertools import groupby
from pathlib import Path

import pytest

TOKEN_VAR = "REWARDLOOP_LEARNER_TOKEN"
PHASE_STEPS = 3  # steps trained in each phase (1, 3 and 2 workers) before the next change
DEADLINE_S = 240.0  # for each phase: start-up, model loading and steps on a loaded 2-core machine


def _env(token: str) -> dict:
    return {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        TOKEN_VAR: token,
    }


def _cli(args: list[str], env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "rewardloop.cli", *args]
    return subprocess.run(cmd, env=env, timeout=timeout, capture_output=True, text=True)


def _records(out: Path) -> list[dict]:
    path = out / "metrics.jsonl"
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.endswith("}")]


def _steps(out: Path) -> list[dict]:
    return [r for r in _records(out) if "event" not in r]


def _wait_for(what: str, predicate, proc: subprocess.Popen, timeout_s: float = DEADLINE_S):
    """Poll `predicate` (a look at the run directory) until true; fail if the run exits first."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"the run exited ({proc.returncode}) before {what}: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout_s:.0f}s")
        time.sleep(0.25)  # polling the files the run writes, with a deadline


def _train(model_cache: str, out: Path, env: dict, extra: list[str]) -> subprocess.Popen:
    sets = [
        f"model.cache_dir={model_cache}",
        "learner.max_steps=400",  # ended by `rewardloop stop`
        "learner.max_staleness=2",  # room for 3 workers' groups in flight
        "learner.wait_timeout_s=120",
        f"learner.token=env:{TOKEN_VAR}",
        "eval.every_steps=0",
        "eval.samples_per_prompt=2",
        "eval.target=0",
        "cluster.num_cpus=4",
        *extra,
    ]
    cmd = [sys.executable, "-m", "rewardloop.cli", "train", "--quiet", "--out", str(out)]
    for item in sets:
        cmd += ["--set", item]
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def _finish(proc: subprocess.Popen, out: Path, env: dict) -> dict:
    stopped = _cli(["stop", str(out)], env, timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    try:
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    return json.loads((out / "summary.json").read_text())


def _with_workers(out: Path, n: int) -> int:
    return sum(1 for s in _steps(out) if s.get("workers") == n)


def test_scale_1_to_3_to_2_while_training(model_cache, tmp_path):
    out = tmp_path / "run"
    env = _env("scaling-test-token")
    proc = _train(model_cache, out, env, ["rollout.num_workers=1"])
    try:
        _wait_for(f"{PHASE_STEPS} steps", lambda: len(_steps(out)) >= PHASE_STEPS, proc)
        # the wrong token is refused, and changes nothing
        refused = _cli(["scale", str(out), "--workers", "3"], _env("wrong"), timeout=60)
        assert refused.returncode == 1 and "HTTP 401" in refused.stderr, refused.stderr
        up = _cli(["scale", str(out), "--workers", "3", "--wait", str(DEADLINE_S)], env)
        assert up.returncode == 0, up.stderr
        state = json.loads(up.stdout)
        assert (state["target"], state["running"], state["starting"]) == (3, 3, 0)
        _wait_for("steps with 3 workers", lambda: _with_workers(out, 3) >= PHASE_STEPS, proc)
        down = _cli(["scale", str(out), "--workers", "2", "--wait", str(DEADLINE_S)], env)
        assert down.returncode == 0, down.stderr
        state = json.loads(down.stdout)
        assert (state["target"], state["running"], state["retiring"], state["retired"]) == (
            2,
            2,
            0,
            1,
        )
        _wait_for("steps with 2 workers", lambda: _with_workers(out, 2) >= PHASE_STEPS, proc)
        summary = _finish(proc, out, env)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)

    records = _records(out)
    steps = [r for r in records if "event" not in r]
    assert summary["steps"] == len(steps)
    # every step says how many workers were up, and the phases came in the order asked for
    scaled = [e for e in records if e.get("event") == "scale"]
    assert [(e["from"], e["to"], e["by"]) for e in scaled] == [(1, 3, "scale"), (3, 2, "scale")]
    up_at, down_at = scaled[0]["step"], scaled[1]["step"]
    assert {s["workers"] for s in steps if s["step"] <= up_at} == {1}
    ramp = [s["workers"] for s in steps if up_at < s["step"] <= down_at]
    assert ramp == sorted(ramp) and ramp[-PHASE_STEPS:] == [3] * PHASE_STEPS  # up one by one
    assert {s["workers"] for s in steps if s["step"] > down_at} == {2}
    assert [n for n, _ in groupby(s["workers"] for s in steps)][-2:] == [3, 2]

    workers = {w["worker_id"]: w for w in summary["rollout_workers"] if "worker_id" in w}
    (retired,) = [w for w in workers.values() if w.get("retired")]
    assert retired["worker_id"] == "worker-2"  # the newest goes first
    # it finished its generation and sent every group before it exited
    assert retired["generations"] >= 1 and retired["unsent_at_exit"] == 0
    dropped_here = retired["non_finite_rewards"] + retired["siblings_dropped"]
    assert retired["sent"] == retired["trajectories"] - dropped_here
    assert retired["accepted"] + retired["duplicate"] + retired["rejected"] == retired["sent"]
    _assert_accounted_for(summary)


def _assert_accounted_for(summary: dict) -> None:
    """Every generated trajectory ended in one counted state (summary.json `accounting`)."""
    accounting = summary["accounting"]
    parts = ("trained", "stale", "expired", "rejected", "in_flight_at_end", "lost")
    assert accounting["lost"] == 0, accounting
    assert accounting["generated"] == sum(accounting[k] for k in parts), accounting
    per_worker = accounting["workers"]
    assert set(per_worker) == {"worker-0", "worker-1", "worker-2"}
    # the retired worker left nothing in flight: it sent everything before it exited
    assert per_worker["worker-2"]["in_flight_at_end"] == 0
    assert per_worker["worker-2"]["lost"] == 0
    assert per_worker["worker-2"]["generated"] == summary_worker(summary, "worker-2")["sent"]


def summary_worker(summary: dict, worker_id: str) -> dict:
    (found,) = [w for w in summary["rollout_workers"] if w.get("worker_id") == worker_id]
    return found


def test_autoscale_adds_a_worker_when_the_learner_waits(model_cache, tmp_path):
    out = tmp_path / "run"
    env = _env("autoscale-test-token")
    autoscale = [
        "rollout.num_workers=1",
        "rollout.autoscale.enabled=true",
        "rollout.autoscale.min_workers=1",
        "rollout.autoscale.max_workers=2",
        "rollout.autoscale.add_above_wait_fraction=0.2",
        "rollout.autoscale.remove_below_wait_fraction=0.0",  # never removes in this test
        "rollout.autoscale.window_steps=2",
        "rollout.autoscale.cooldown_s=0",
        # one worker cannot keep the learner busy: each step needs 2 groups, a generation makes 1
        "learner.groups_per_step=2",
        "rollout.prompts_per_generation=1",
    ]
    proc = _train(model_cache, out, env, autoscale)
    try:
        _wait_for("a step with 2 workers", lambda: _with_workers(out, 2) >= 2, proc)
        summary = _finish(proc, out, env)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
    records = _records(out)
    (event,) = [e for e in records if e.get("event") == "scale"]
    assert (event["from"], event["to"], event["by"]) == (1, 2, "autoscale")
    assert "learner waited" in event["reason"]
    steps = [r for r in records if "event" not in r]
    before = [s for s in steps if s["step"] <= event["step"]]
    assert before and all(s["workers"] == 1 for s in before)
    assert summary["steps"] == len(steps)
