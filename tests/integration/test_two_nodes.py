"""Two Ray nodes on this machine (loopback, told apart by custom resources): a head with
`learner_node` and a second node with `rollout_node`, each a separate `ray start` in its own
temp dir. A `rewardloop train --address` run places the learner on the head and the worker on
the other node, trains a few steps across them, and both nodes are stopped by PID after."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import pytest

from rewardloop.bench.ray_nodes import RAY, agent_ports, free_port, stop_processes

STEPS = 3


@pytest.fixture
def two_nodes():
    """(address, state API URL, env): a head with {learner_node: 1} and a node with {rollout_node: 1}."""
    head_dir = tempfile.mkdtemp(prefix="rlhead", dir="/tmp")
    node_dir = tempfile.mkdtemp(prefix="rlnode", dir="/tmp")
    port = free_port()
    address = f"127.0.0.1:{port}"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    common = [
        "--num-cpus=1",
        "--disable-usage-stats",
        "--node-ip-address=127.0.0.1",
        *agent_ports(),
    ]
    dashboard_port = free_port()  # for Ray's state API (list_actors), which the dashboard serves
    head = [RAY, "start", "--head", f"--port={port}", "--include-dashboard=true"]
    head += ["--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}"]
    head += [f"--ray-client-server-port={free_port()}", f"--temp-dir={head_dir}"]
    head += [*common, '--resources={"learner_node": 1}']
    node = [RAY, "start", f"--address={address}", f"--temp-dir={node_dir}"]
    node += ["--num-cpus=1", "--disable-usage-stats", "--node-ip-address=127.0.0.1", *agent_ports()]
    node += ['--resources={"rollout_node": 1}']
    try:
        for cmd in (head, node):
            done = subprocess.run(cmd, env=env, timeout=120, capture_output=True, text=True)
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        yield address, f"http://127.0.0.1:{dashboard_port}", env
    finally:
        stop_processes([head_dir, node_dir, f"--gcs-address={address}", f"--gcs_address={address}"])


def test_the_learner_and_the_worker_train_on_different_nodes(model_cache, two_nodes, tmp_path):
    from ray.util.state import list_actors

    address, state_api, env = two_nodes
    sets = [
        f"model.cache_dir={model_cache}",
        f"learner.max_steps={STEPS}",
        "eval.every_steps=0",
        "eval.samples_per_prompt=2",
        "rollout.num_workers=1",
        "cluster.learner_resources={CPU: 1, learner_node: 0.01}",
        "cluster.rollout_resources={CPU: 1, rollout_node: 0.01}",
        "cluster.placement_strategy=SPREAD",
        "cluster.placement_timeout_s=60",
    ]
    cmd = [sys.executable, "-m", "rewardloop.cli", "train", "--quiet", "--out", str(tmp_path)]
    cmd += ["--address", address]
    for item in sets:
        cmd += ["--set", item]
    done = subprocess.run(cmd, env=env, timeout=600, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == STEPS
    learner = summary["placement"]["learner"]
    (worker,) = summary["placement"]["workers"]
    assert learner["node_id"] and worker["node_id"]
    assert learner["node_id"] != worker["node_id"]
    assert "learner_node" in learner["node_resources"]
    assert "rollout_node" not in learner["node_resources"]
    assert "rollout_node" in worker["node_resources"]
    assert worker["worker_id"] == "worker-0"
    # Ray's state API agrees: where each actor actually ran (they are dead now, still listed)
    actors = list_actors(address=state_api, limit=1000, raise_on_missing_output=False)
    nodes = {a.class_name: a.node_id for a in actors}
    assert nodes["LearnerActor"] == learner["node_id"]
    assert nodes["RolloutActor"] == worker["node_id"]
