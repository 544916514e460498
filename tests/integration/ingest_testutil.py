"""Helpers for the ingest tests: trajectories, a settable version, a raw stream, a learner."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator

from rewardloop import grpc_util
from rewardloop.learner.buffer import TrajectoryBuffer
from rewardloop.learner.ingest_server import IngestServer
from rewardloop.pb import trajectory_pb2, trajectory_pb2_grpc
from rewardloop.trajectory import Trajectory

VOCAB = 50


def traj(
    tid: str, group: str | None = None, version: int = 0, group_size: int = 1, **kw
) -> Trajectory:
    fields = dict(
        id=tid,
        group_id=group or f"g-{tid}",
        prompt_ids=[1, 2, 3],
        completion_ids=[4, 5],
        behavior_logprobs=[-0.1, -0.2],
        reward=0.5,
        policy_version=version,
        group_size=group_size,
    )
    fields.update(kw)
    return Trajectory(**fields)


class Version:
    def __init__(self, v: int = 0) -> None:
        self.v = v

    def __call__(self) -> int:
        return self.v


def wait_until(cond, timeout_s: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class RawStream:
    """A raw bidi stream, for speaking the protocol wrongly on purpose."""

    def __init__(self, address: str, timeout_s: float = 10.0):
        self.channel = grpc_util.new_channel(address)
        self.requests: queue.Queue = queue.Queue()
        stub = trajectory_pb2_grpc.TrajectoryServiceStub(self.channel)
        self.call = stub.Stream(iter(self.requests.get, None), timeout=timeout_s)

    def send(self, msg: trajectory_pb2.TrajectoryBatch) -> None:
        self.requests.put(msg)

    def next_ack(self) -> trajectory_pb2.Ack:
        return next(self.call)

    def close(self) -> None:
        self.requests.put(None)
        self.call.cancel()
        self.channel.close()


def started_learner() -> Iterator[tuple[TrajectoryBuffer, Version, IngestServer]]:
    """(buffer, version, server) with capacity 4 and max_staleness 1; stops the server after."""
    buffer = TrajectoryBuffer(capacity=4, max_staleness=1)
    version = Version(0)
    server = IngestServer(buffer, version, vocab_size=VOCAB)
    server.start()
    yield buffer, version, server
    server.stop(grace_s=0.5)
