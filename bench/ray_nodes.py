"""Ray nodes as separate `ray start` processes on this machine, each in its own temp dir.

For the scaling benchmark (two loopback nodes told apart by custom resources) and the
`ray job submit` test (a head with the dashboard). Nodes are stopped by the PIDs whose command
line names their temp dir or GCS address -- never by `ray stop`, which would stop every Ray
on the machine -- first with SIGTERM, then SIGKILL, each with a deadline.

    with RayNodes() as nodes:
        address = nodes.head(num_cpus=1, resources={"learner_node": 1}, dashboard=True)
        nodes.worker(num_cpus=3, resources={"rollout_node": 3})
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
START_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def agent_ports() -> list[str]:
    """Distinct ports for one node's agents (two nodes on one machine must not share them)."""
    names = ["dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port"]
    names += ["metrics-export-port"]
    return [f"--{name}={free_port()}" for name in names]


def pids_naming(needles: list[str]) -> list[int]:
    """PIDs (not this one) whose command line names one of `needles`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if any(n.encode() in cmdline for n in needles):
            pids.append(int(entry.name))
    return pids


def stop_processes(needles: list[str]) -> None:
    for sig, wait_s in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        for pid in pids_naming(needles):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait_s
        while pids_naming(needles) and time.monotonic() < deadline:
            time.sleep(0.2)  # polling for the processes to exit, with a deadline


class RayNodes:
    """A head and any number of worker nodes on 127.0.0.1; `close()` stops them all."""

    def __init__(self, env: dict | None = None):
        self.env = {
            **os.environ,
            "RAY_AUTH_MODE": "disabled",
            "RAY_USAGE_STATS_ENABLED": "0",
            **(env or {}),
        }
        # the job supervisor and the actors run `rewardloop` from this environment
        bin_dir = str(Path(sys.executable).parent)
        self.env["PATH"] = f"{bin_dir}{os.pathsep}{self.env.get('PATH', '')}"
        self.address = ""
        self.dashboard_url = ""
        self._dirs: list[str] = []

    def _start(self, cmd: list[str]) -> None:
        done = subprocess.run(
            cmd, env=self.env, timeout=START_TIMEOUT_S, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:3])}: {done.stdout[-2000:]}{done.stderr[-2000:]}")

    def _common(self, num_cpus: float, resources: dict | None) -> list[str]:
        temp_dir = tempfile.mkdtemp(prefix="rlnode", dir="/tmp")
        self._dirs.append(temp_dir)
        out = [f"--temp-dir={temp_dir}", f"--num-cpus={num_cpus:g}", "--disable-usage-stats"]
        out += ["--node-ip-address=127.0.0.1", *agent_ports()]
        if resources:
            out.append(f"--resources={json.dumps(resources)}")
        return out

    def head(self, num_cpus: float, resources: dict | None = None, dashboard: bool = False) -> str:
        """Start the head; returns its GCS address (dashboard_url is set with dashboard=True)."""
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        cmd = [RAY, "start", "--head", f"--port={port}", f"--ray-client-server-port={free_port()}"]
        if dashboard:
            dashboard_port = free_port()
            cmd += ["--include-dashboard=true", "--dashboard-host=127.0.0.1"]
            cmd += [f"--dashboard-port={dashboard_port}"]
            self.dashboard_url = f"http://127.0.0.1:{dashboard_port}"
        else:
            cmd += ["--include-dashboard=false"]
        self._start(cmd + self._common(num_cpus, resources))
        return self.address

    def worker(self, num_cpus: float, resources: dict | None = None) -> None:
        """Start a node that joins the head."""
        cmd = [RAY, "start", f"--address={self.address}"]
        self._start(cmd + self._common(num_cpus, resources))

    def alive(self) -> bool:
        """The head's GCS answers `ray status` (within a deadline)."""
        try:
            done = subprocess.run(
                [RAY, "status", f"--address={self.address}"],
                env=self.env,
                timeout=60,
                capture_output=True,
            )
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0

    def close(self) -> None:
        needles = list(self._dirs)
        if self.address:
            needles += [f"--gcs-address={self.address}", f"--gcs_address={self.address}"]
        if needles:
            stop_processes(needles)
        for temp_dir in self._dirs:  # Ray's session logs: gone with the nodes
            shutil.rmtree(temp_dir, ignore_errors=True)
        self._dirs.clear()

    def __enter__(self) -> RayNodes:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
