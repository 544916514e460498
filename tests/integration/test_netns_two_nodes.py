"""The two-node Ray test on two "hosts" with their own addresses (issue 11, point 3).

A Ray head runs in network namespace a (10.200.x.1, `learner_node`), a second Ray node in
namespace b (10.200.x.2, `rollout_node`) joins it across the veth pair, and `rewardloop train
--address` (the driver, inside namespace a) places the learner on the head and the worker on
the other node and trains a few steps across the link; the learner binds 0.0.0.0 with a token
(as deploy/config/cluster.yaml does) and advertises its node's address to the worker. The placement in summary.json names
each node by its own address. Both nodes are stopped by PID afterwards (processes are visible
across network namespaces); the namespaces go with `TwoHosts`. Skips, saying why, where
namespaces are not allowed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from netns_testutil import TwoHosts, unavailable
from test_two_nodes import RAY, STEPS

from rewardloop.bench.ray_nodes import stop_processes

ROOT = Path(__file__).resolve().parents[2]
PORT = 6390  # each namespace has its own ports: no clash with anything on the host


def in_ns(hosts: TwoHosts, side: str, cmd: list[str], env: dict, timeout_s: float):
    return subprocess.run(
        ["ip", "netns", "exec", hosts.ns[side], *cmd],
        env=env,
        timeout=timeout_s,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def test_learner_and_worker_on_two_namespaced_nodes(model_cache, tmp_path):
    why = unavailable()
    if why:
        print(f"\n[netns] skipped: {why}")
        pytest.skip(why)
    head_dir = tempfile.mkdtemp(prefix="rlnshead", dir="/tmp")
    node_dir = tempfile.mkdtemp(prefix="rlnsnode", dir="/tmp")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env["NETNS_TOKEN"] = "netns-ray-t0ken"
    with TwoHosts() as hosts:
        a, b = hosts.addr["a"], hosts.addr["b"]
        address = f"{a}:{PORT}"
        head = [RAY, "start", "--head", f"--port={PORT}", "--include-dashboard=false"]
        head += ["--num-cpus=1", "--disable-usage-stats", f"--node-ip-address={a}"]
        head += [f"--temp-dir={head_dir}", '--resources={"learner_node": 1}']
        node = [RAY, "start", f"--address={address}", f"--temp-dir={node_dir}"]
        node += ["--num-cpus=1", "--disable-usage-stats", f"--node-ip-address={b}"]
        node += ['--resources={"rollout_node": 1}']
        try:
            for side, cmd in (("a", head), ("b", node)):
                done = in_ns(hosts, side, cmd, env, 180)
                assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
            sets = [
                f"model.cache_dir={model_cache}",
                f"learner.max_steps={STEPS}",
                "eval.every_steps=0",
                "eval.samples_per_prompt=2",
                "rollout.num_workers=1",
                "cluster.learner_resources={CPU: 1, learner_node: 0.01}",
                "cluster.rollout_resources={CPU: 1, rollout_node: 0.01}",
                "cluster.placement_strategy=SPREAD",
                "cluster.placement_timeout_s=120",
                # the worker on the other host must reach the learner's servers: bind every
                # address of the head (advertised as its node address), with a token
                "learner.host=0.0.0.0",
                "learner.token=env:NETNS_TOKEN",
            ]
            cmd = [sys.executable, "-m", "rewardloop.cli", "train", "--quiet"]
            cmd += ["--out", str(tmp_path), "--address", address]
            for item in sets:
                cmd += ["--set", item]
            done = in_ns(hosts, "a", cmd, env, 600)
            assert done.returncode == 0, done.stderr[-3000:]
        finally:
            stop_processes(
                [head_dir, node_dir, f"--gcs-address={address}", f"--gcs_address={address}"]
            )
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == STEPS
    learner = summary["placement"]["learner"]
    (worker,) = summary["placement"]["workers"]
    print(f"\n[netns] learner on {learner['node_ip']}, worker on {worker['node_ip']}")
    assert (learner["node_ip"], worker["node_ip"]) == (a, b)
    assert learner["node_id"] != worker["node_id"]
    assert "learner_node" in learner["node_resources"]
    assert "rollout_node" in worker["node_resources"]
