"""A port that accepts connections but never answers the hello (a hung learner, a wrong service
behind a load balancer) is retried with backoff like a refused one, not given up on at the
first silence: here a real TCP listener that never speaks, then a real IngestServer behind it."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from ingest_testutil import traj

from rewardloop.actors.trajectory_client import TrajectoryClient
from rewardloop.errors import Unavailable
from rewardloop.learner.buffer import TrajectoryBuffer
from rewardloop.learner.ingest_server import IngestServer


class _Silent:
    """Accepts TCP connections on port 0 and holds them open without a byte in reply."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()
        self.thread.join(timeout=5)


def test_a_silent_port_is_retried_then_reported_with_the_attempts():
    silent = _Silent()
    client = TrajectoryClient(silent.address, "w1", timeout_s=0.3, max_retries=2)
    try:
        with pytest.raises(Unavailable, match=r"3 attempts .*no hello ack within 0.3s"):
            client.send([traj("a")])
        assert client.stats()["connect_failures"] == 3 and client.carried == 1
    finally:
        client.close()
        silent.close()


def test_a_silent_port_then_a_learner_is_reached_on_a_retry():
    silent = _Silent()
    server = IngestServer(TrajectoryBuffer(capacity=8, max_staleness=4), lambda: 0)
    server.start()
    client = TrajectoryClient(silent.address, "w1", timeout_s=0.5, max_retries=10)

    def move_once_dialled() -> None:  # as `follow` does when a learner moves
        deadline = time.monotonic() + 30
        while not silent.accepted and time.monotonic() < deadline:
            time.sleep(0.01)  # polling the listener, with a deadline
        client.target = server.address  # read on the next attempt

    mover = threading.Thread(target=move_once_dialled, daemon=True)
    mover.start()
    try:
        assert client.send([traj("a")]).accepted == ["a"]
        assert silent.accepted and client.stats()["connect_failures"] >= 1
    finally:
        mover.join(timeout=30)
        client.close()
        server.stop(grace_s=0.5)
        silent.close()
