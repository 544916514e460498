"""`ray job submit -- rewardloop train ...` against a real head from `ray start --head`.

The one test with Ray's dashboard (the Jobs API lives there): it needs about 1 GB of memory
beyond the run itself (dashboard, job agent, job supervisor), so it is marked slow and skips
when the machine has less than MIN_AVAILABLE_GB available. The working dir uploaded with the
job is a small directory holding only the run config (rewardloop itself is installed in the
environment the head was started from). The run attaches to the head (RAY_ADDRESS, set by the
job supervisor), trains 3 steps, and leaves the head running: it did not start it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from rewardloop.bench.ray_nodes import RAY, RayNodes

STEPS = 3
MIN_AVAILABLE_GB = 1.5
pytestmark = pytest.mark.slow


def available_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return 0.0


@pytest.fixture
def head_with_dashboard():
    if available_gb() < MIN_AVAILABLE_GB:
        pytest.skip(f"needs ~{MIN_AVAILABLE_GB} GB available for Ray's dashboard and job agent")
    nodes = RayNodes()
    try:
        nodes.head(num_cpus=2, dashboard=True)
        yield nodes
    finally:
        nodes.close()


def test_ray_job_submit_trains_and_leaves_the_head_running(
    model_cache, head_with_dashboard, tmp_path
):
    nodes = head_with_dashboard
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    out = tmp_path / "run"
    (job_dir / "run.yaml").write_text(
        "rollout:\n  num_workers: 1\n"
        f"model:\n  cache_dir: {model_cache}\n"
        "eval:\n  every_steps: 0\n  samples_per_prompt: 2\n"
        "cluster:\n  placement_timeout_s: 60\n"
    )
    runtime_env = {"env_vars": {"RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1"}}
    submission_id = f"rewardloop-test-{tmp_path.name}"
    cmd = [RAY, "job", "submit", "--address", nodes.dashboard_url, "--working-dir", str(job_dir)]
    cmd += ["--submission-id", submission_id, "--runtime-env-json", json.dumps(runtime_env)]
    cmd += ["--", "rewardloop", "train", "--config", "run.yaml", "--quiet"]
    cmd += ["--max-steps", str(STEPS), "--out", str(out)]
    done = subprocess.run(cmd, env=nodes.env, timeout=400, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(nodes.dashboard_url)
    assert client.get_job_status(submission_id) == JobStatus.SUCCEEDED
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == STEPS and summary["error"] == ""
    assert summary["trajectories"] > 0
    # the run's actors ran on this head (it did not start a Ray of its own) ...
    from ray.util.state import list_actors

    actors = list_actors(address=nodes.dashboard_url, limit=1000, raise_on_missing_output=False)
    assert {"LearnerActor", "RolloutActor"} <= {a.class_name for a in actors}
    # ... and it left the head running
    assert nodes.alive()
