"""`Run` owns only what it started: attached to a Ray it did not start, it leaves that Ray
running (its own actors gone); a run that started its own local Ray shuts it down."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from rewardloop.config import load_config

RAY = str(Path(sys.executable).with_name("ray"))
FAST = [
    "learner.max_steps=3",
    "eval.every_steps=0",
    "eval.samples_per_prompt=2",
    "rollout.num_workers=1",
]


def _fast_cfg(model_cache, out, *extra):
    return load_config(None, [f"model.cache_dir={model_cache}", f"out={out}", *FAST, *extra])


def _wait_until(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)  # polling a condition with a deadline


def test_attached_to_the_callers_ray_it_leaves_it_running(model_cache, ray_local, tmp_path):
    from rewardloop.cluster.run import Run

    ray = ray_local
    cpus = ray.cluster_resources()["CPU"]
    run = Run(_fast_cfg(model_cache, tmp_path), progress=False)
    summary = run.execute()
    assert summary["steps"] == 3 and not run.owns_ray
    assert ray.is_initialized()
    # the run's actors were killed: every CPU is free again
    _wait_until(lambda: ray.available_resources().get("CPU", 0) == cpus, 30, "actors to go")

    @ray.remote(num_cpus=0)
    def still_alive() -> int:
        return 42

    assert ray.get(still_alive.remote(), timeout=60) == 42


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pids_under(temp_dir: str) -> list[int]:
    """PIDs of processes whose command line names `temp_dir` (the head's raylet, GCS, workers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if temp_dir.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


@pytest.fixture
def ray_head():
    """A real Ray head from `ray start --head` in its own temp dir; its processes killed by PID."""
    temp_dir = tempfile.mkdtemp(prefix="rlhead", dir="/tmp")
    port = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    cmd = [RAY, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false"]
    cmd += [f"--temp-dir={temp_dir}", "--disable-usage-stats"]
    subprocess.run(cmd, check=True, env=env, timeout=120, capture_output=True)
    try:
        yield f"127.0.0.1:{port}", env
    finally:
        _signal_all(_pids_under(temp_dir), signal.SIGTERM)
        deadline = time.monotonic() + 15
        while _pids_under(temp_dir) and time.monotonic() < deadline:
            time.sleep(0.2)  # polling for the processes to exit, with a deadline
        _signal_all(_pids_under(temp_dir), signal.SIGKILL)


def _status(address: str, env: dict) -> int:
    return subprocess.run(
        [RAY, "status", f"--address={address}"], env=env, timeout=60, capture_output=True
    ).returncode


def test_a_run_attached_to_a_ray_head_leaves_the_head_running(model_cache, ray_head, tmp_path):
    address, env = ray_head
    assert _status(address, env) == 0
    cmd = [sys.executable, "-m", "rewardloop.cli", "train", "--quiet", "--out", str(tmp_path)]
    cmd += ["--address", address]  # `rewardloop train --address HOST:PORT`
    for item in [f"model.cache_dir={model_cache}", *FAST]:
        cmd += ["--set", item]
    done = subprocess.run(cmd, env=env, timeout=600, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 3
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["cluster"]["address"] == address
    assert _status(address, env) == 0  # the cluster the run attached to is still up
