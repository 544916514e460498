"""An embedded Ray (cluster/placement.py `connect` with no address) starts lean: no autoscaler
monitor, no dashboard head, no prestarted task workers (cluster/startup.py), while what a run
uses still works: actors, and their output forwarded to the driver by the log monitor.

Runs in a fresh subprocess: the test session may hold a Ray of its own (`ray_local`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("ray")

PROBE = r"""
import json, os, sys, time
import psutil, ray
from ray._private.node import Node
from rewardloop.cluster.placement import connect
from rewardloop.cluster.startup import LEAN_HEAD_SKIPS
from rewardloop.config import load_config

before = {name: getattr(Node, name) for name in LEAN_HEAD_SKIPS}
connect(load_config(None, ["cluster.num_cpus=2"]))

@ray.remote(num_cpus=1)
class Echo:
    def say(self, text):
        print(text, flush=True)
        return os.getpid()

pid = ray.get(Echo.remote().say.remote("lean-ray-probe-line"), timeout=120)
children = [" ".join(p.cmdline()[:3]) for p in psutil.Process().children(recursive=True)]
idle = [c for c in children if c.startswith("ray::IDLE")]
restored = all(getattr(Node, name) is method for name, method in before.items())
print(json.dumps({"children": children, "idle": idle, "restored": restored,
                  "webui": ray._private.worker._global_node.webui_url, "actor_pid": pid}),
      flush=True)
sys.stdin.readline()  # the test answers once the actor's line has reached this driver
ray.shutdown()
"""


def test_an_embedded_ray_starts_without_the_processes_a_run_never_uses(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    for name in ("RAY_prestart_worker_first_driver", "RAY_LOG_MONITOR_MANY_FILES_THRESHOLD"):
        env.pop(name, None)  # the run's own defaults, not the caller's
    probe = subprocess.Popen(
        [sys.executable, "-c", PROBE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(probe.stdout), daemon=True)
    try:
        reader.start()
        # the report, then the actor's print forwarded by the log monitor (it scans every 0.5 s)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and probe.poll() is None:
            seen = list(lines)
            if any(x.startswith("{") for x in seen) and any(
                "lean-ray-probe-line" in x for x in seen
            ):
                break
            reader.join(timeout=0.1)
        probe.stdin.write("done\n")
        probe.stdin.flush()
        assert probe.wait(timeout=120) == 0, "".join(lines)[-3000:]
    finally:
        if probe.poll() is None:
            probe.kill()
            probe.wait(timeout=30)
    reader.join(timeout=30)
    output = "".join(lines)
    report = json.loads(next(s for s in output.splitlines() if s.startswith("{")))
    children = " | ".join(report["children"])
    assert "raylet" in children and "gcs_server" in children
    assert "autoscaler/_private/monitor.py" not in children  # no autoscaler monitor
    assert "dashboard/dashboard.py" not in children  # no dashboard head
    assert "log_monitor.py" in children  # kept: it forwards the actors' output
    assert report["webui"] is None
    assert report["idle"] == []  # no prestarted worker waiting for tasks that never come
    assert report["restored"]  # Ray's Node is left as it was found
    # the actor's print reached the driver (through the log monitor)
    assert "lean-ray-probe-line" in output
