"""A learner that Ray restarts on another port (its old one was taken meanwhile): the in-cluster
rollout workers follow it to the new address, training goes on, and nothing is lost."""

from __future__ import annotations

import collections
import os
import signal
import socket
import threading
import time
from pathlib import Path

from run_testutil import execute_with_fault

from rewardloop.config import load_config
from rewardloop.learner.accounting import read_audit


def _trained_twice(out: Path) -> list[str]:
    counts = collections.Counter(
        r["id"] for r in read_audit(out / "audit" / "learner.jsonl") if r["outcome"] == "trained"
    )
    return [i for i, n in counts.items() if n > 1]


class _PortSquatter:
    """Takes a TCP port as soon as it is free (polling with a deadline) and holds it: listens,
    and closes every connection at once, as a stranger's server on that port would refuse a
    gRPC client."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.sock: socket.socket | None = None
        self.refused = 0
        self.done = threading.Event()

    def take(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(
                socket.SOL_SOCKET, socket.SO_REUSEADDR, 1
            )  # past TIME_WAIT, not a listener
            try:
                s.bind((self.host, self.port))
                s.listen(16)
            except OSError:
                s.close()
                self.done.wait(0.01)  # the killed learner still holds it: poll again
                continue
            s.settimeout(0.2)
            self.sock = s
            threading.Thread(target=self._refuse, daemon=True).start()
            return True
        return False

    def _refuse(self) -> None:
        while not self.done.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:  # the accept timeout: look at `done` again
                continue
            self.refused += 1
            conn.close()

    def close(self) -> None:
        self.done.set()
        if self.sock is not None:
            self.sock.close()


def test_workers_follow_a_learner_restarted_on_another_port(model_cache, ray_local, tmp_path):
    from rewardloop.cluster.run import Run

    cfg = load_config(
        None,
        [
            f"model.cache_dir={model_cache}",
            "learner.max_steps=14",
            "learner.checkpoint_every_steps=4",
            "eval.every_steps=0",
            "eval.samples_per_prompt=2",
            f"out={tmp_path}",
            "rollout.num_workers=1",
        ],
    )
    run = Run(cfg, progress=False)
    killed: dict = {}
    squatters: list[_PortSquatter] = []
    done = threading.Event()

    def kill_and_take_the_port() -> None:  # polls the driver's step count, with a deadline
        deadline = time.monotonic() + 300
        while not done.is_set() and time.monotonic() < deadline:
            if len(run.steps) >= 5:
                info = run.calls("incarnation")
                host, _, port = run.endpoints["ingest"].rpartition(":")
                squatter = _PortSquatter(host, int(port))
                squatters.append(squatter)
                os.kill(info["pid"], signal.SIGKILL)
                killed.update(pid=info["pid"], ingest=run.endpoints["ingest"])
                killed["taken"] = squatter.take(timeout_s=60)
                return
            done.wait(0.2)

    killer = threading.Thread(target=kill_and_take_the_port, daemon=True)
    summary = execute_with_fault(run, killer, done, lambda: [s.close() for s in squatters])
    assert killed, "the learner was never killed"
    assert killed["taken"], "the old ingest port could not be taken before the learner came back"
    assert summary["error"] == "" and summary["steps"] == 14, summary["error"]
    (restart,) = summary["learner_restarts"]
    assert restart["pid"] != killed["pid"]
    assert run.endpoints["ingest"] != killed["ingest"]  # the learner serves on another port
    assert run.pool.endpoints["ingest"] == run.endpoints["ingest"]
    accounting = summary["accounting"]
    assert accounting["lost"] == 0, accounting
    assert _trained_twice(tmp_path) == []
    assert accounting["trained"] == 14 * cfg.learner.groups_per_step * cfg.rollout.group_size
    # the worker that trained after the restart is the one that was running before it
    assert summary["worker_restarts"]["deaths"] == []
