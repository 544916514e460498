"""A run in which one rollout worker is an external process (`rewardloop worker --run-dir`).

The run (real local Ray, one in-cluster worker, `learner.serve_weights=true`) writes its ingest
and weights addresses to endpoints.json; the external worker, started first, loads its model,
waits for them, streams trajectories through TrajectoryService and takes weights from
WeightService. The learner must train on some of its trajectories, and once the run ends the
worker sees the learner gone, stops after its reconnect budget and exits 0 with its counters.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from rewardloop.config import load_config

ROOT = Path(__file__).resolve().parents[2]
WORKER_ID = "external-test"


def test_a_run_trains_on_an_external_workers_trajectories(model_cache, ray_local, tmp_path):
    from rewardloop.cluster.run import train

    out = tmp_path / "run"
    shared = [f"model.cache_dir={model_cache}", "learner.max_staleness=2"]
    worker_cmd = [sys.executable, "-m", "rewardloop.cli", "worker", "--run-dir", str(out)]
    worker_cmd += ["--worker-id", WORKER_ID, "--reconnect-s", "3", "--wait-s", "300"]
    worker_cmd += [arg for kv in shared for arg in ("--set", kv)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    log_out, log_err = tmp_path / "worker.out", tmp_path / "worker.err"  # files: no full pipe
    with log_out.open("w") as fout, log_err.open("w") as ferr:
        proc = subprocess.Popen(worker_cmd, cwd=ROOT, env=env, stdout=fout, stderr=ferr)
    try:
        cfg = load_config(
            None,
            [
                *shared,
                "learner.max_steps=8",
                "learner.serve_weights=true",
                "eval.every_steps=0",
                "eval.samples_per_prompt=2",
                "rollout.num_workers=1",
                f"out={out}",
            ],
        )
        summary = train(cfg, progress=False)
        proc.wait(timeout=120)  # it stops on its own once the learner has gone
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, log_err.read_text()[-3000:]
    counters = json.loads(log_out.read_text().strip().splitlines()[-1])
    assert counters["worker_id"] == WORKER_ID and counters["connected"]
    assert counters["stopped"].startswith("learner gone"), counters["stopped"]
    assert counters["accepted"] > 0 and counters["weight_swaps"] >= 1
    assert summary["steps"] == 8 and summary["error"] == ""
    (inside,) = summary["rollout_workers"]
    # every trained trajectory was accepted from one of the two workers: more were trained than
    # the in-cluster worker had accepted, so the learner trained on the external one's
    assert summary["trajectories"] > inside["accepted"], (summary["trajectories"], inside)
    endpoints = json.loads((out / "endpoints.json").read_text())
    assert endpoints["ingest"] == "" and endpoints["weights"] == ""  # the run marked its end
