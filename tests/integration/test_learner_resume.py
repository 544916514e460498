"""Learner faults on a real local Ray: the learner process SIGKILLed (or SIGTERMed) mid-run is
restarted by Ray from its last resume checkpoint and the run finishes with nothing lost and
nothing trained twice; a run stopped by SIGTERM goes on with `rewardloop train --resume` (the real CLI, as
subprocesses) from the next version, in the same metrics.jsonl, skipping a torn checkpoint."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from run_testutil import execute_with_fault

from rewardloop.cluster.resume import resume_root
from rewardloop.config import load_config
from rewardloop.learner.accounting import read_audit
from rewardloop.learner.resume_state import ResumeStore
from rewardloop.run_outputs import read_records


def _steps(out: Path) -> list[dict]:
    return [r for r in read_records(out / "metrics.jsonl") if "event" not in r]


def _trained_twice(out: Path) -> list[str]:
    counts = collections.Counter(
        r["id"] for r in read_audit(out / "audit" / "learner.jsonl") if r["outcome"] == "trained"
    )
    return [i for i, n in counts.items() if n > 1]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_a_learner_killed_mid_run_is_restarted_and_loses_nothing(
    model_cache, ray_local, tmp_path, sig
):
    """SIGKILL: back from the scheduled checkpoint before the kill. SIGTERM (a pre-empted
    node): the learner checkpoints as it goes, so it comes back exactly where it was."""
    from rewardloop.cluster.run import Run

    every = 4 if sig == signal.SIGKILL else 0  # SIGTERM: no scheduled ones, only its own

    cfg = load_config(
        None,
        [
            f"model.cache_dir={model_cache}",
            "learner.max_steps=14",
            f"learner.checkpoint_every_steps={every}",
            "eval.every_steps=0",
            "eval.samples_per_prompt=2",
            f"out={tmp_path}",
            "rollout.num_workers=1",
        ],
    )
    run = Run(cfg, progress=False)
    killed: dict = {}
    done = threading.Event()

    def kill_at_step_6() -> None:  # polls the driver's step count, with a deadline
        deadline = time.monotonic() + 300
        while not done.is_set() and time.monotonic() < deadline:
            if len(run.steps) >= 6:
                info = run.calls("incarnation")
                killed.update(
                    pid=info["pid"], step=len(run.steps), version=run.steps[-1]["version"]
                )
                if sig == signal.SIGKILL:  # frozen first: the newest checkpoint is then final
                    os.kill(info["pid"], signal.SIGSTOP)
                    latest = ResumeStore(resume_root(cfg)).latest()
                    killed["checkpoint_step"] = latest[1]["step"] if latest else 0
                os.kill(info["pid"], sig)
                return
            done.wait(0.2)

    killer = threading.Thread(target=kill_at_step_6, daemon=True)
    summary = execute_with_fault(run, killer, done)
    assert killed, "the learner was never killed"
    assert summary["error"] == "" and summary["steps"] == 14
    (restart,) = summary["learner_restarts"]
    assert restart["pid"] != killed["pid"]
    if sig == signal.SIGKILL:
        # the newest complete checkpoint when the learner was frozen and killed (the driver's
        # step count can lag the learner's, so it bounds nothing)
        assert 4 <= restart["resumed_step"] == killed["checkpoint_step"]
        assert restart["resumed_version"] > killed["version"]  # never a number seen before
    else:
        assert restart["resumed_step"] >= killed["step"]  # its SIGTERM checkpoint
        assert restart["resumed_version"] >= killed["version"]
    steps = _steps(tmp_path)
    assert [s["step"] for s in steps] == list(range(1, 15))
    versions = [s["version"] for s in steps]
    assert versions == sorted(set(versions)), "versions must only grow"
    assert _trained_twice(tmp_path) == []
    accounting = summary["accounting"]
    assert accounting["lost"] == 0, accounting
    assert accounting["trained"] == 14 * cfg.learner.groups_per_step * cfg.rollout.group_size


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "rewardloop.cli", *args]


def _wait_for_steps(out: Path, n: int, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while len(_steps(out)) < n:
        assert proc.poll() is None, "train ended before it was stopped"
        assert time.monotonic() < deadline, f"no {n} steps within {timeout_s}s"
        try:
            proc.wait(timeout=0.3)  # returns early only if it exits
        except subprocess.TimeoutExpired:
            pass


def test_sigterm_then_resume_continues_the_run(model_cache, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    common = [
        "--quiet",
        "--set",
        f"model.cache_dir={model_cache}",
        "--set",
        "eval.every_steps=0",
        "--set",
        "eval.samples_per_prompt=2",
        "--set",
        "cluster.num_cpus=2",
    ]
    first = subprocess.Popen(
        _cli("train", "--out", str(out), "--max-steps", "40", *common),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_steps(out, 4, first, timeout_s=300)
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=180)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 1 and "--resume" in err, err[-2000:]
    before = _steps(out)
    assert 4 <= len(before) < 40
    # the SIGTERM lands after a machine-dependent number of steps, and the learner may train a
    # few more (restored from its stop checkpoint) than the driver had logged
    total = len(before) + 20
    # a checkpoint torn mid-write, newer than every complete one: never the one resumed
    torn = out / "resume" / "v00009999-s00009999"
    torn.mkdir()
    (torn / "state.pt").write_bytes(b"\x80torn")

    second = subprocess.run(
        _cli("train", "--resume", str(out), "--max-steps", str(total), *common),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert second.returncode == 0, second.stderr[-3000:]
    records = read_records(out / "metrics.jsonl")
    (resume,) = [r for r in records if r.get("event") == "resume"]
    assert resume["resumed"] and 4 <= resume["restored"]["step"] < 9999
    steps = _steps(out)
    assert [s["step"] for s in steps] == list(range(1, total + 1))
    at = resume["restored"]["step"]
    assert at < total, (at, total)
    versions = [s["version"] for s in steps]
    assert versions == sorted(set(versions))
    assert steps[at]["version"] == steps[at - 1]["version"] + 1  # the next version number
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == total and summary["error"] == ""
    assert summary["accounting"]["lost"] == 0, summary["accounting"]
    assert _trained_twice(out) == []
