"""One open `TrajectoryService.Stream` call of a `TrajectoryClient` (actors/trajectory_client.py):
its request queue, the thread that reads its Acks, and its credit state, under one condition."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import grpc

from rewardloop import grpc_util
from rewardloop.pb import trajectory_pb2, trajectory_pb2_grpc


class Stream:
    """One open bidi call: its request queue, the Ack reader thread and the credit state."""

    def __init__(self, target: str, worker_id: str, ca_cert: str = "", token: str = ""):
        self.channel = grpc_util.new_channel(target, ca_cert=ca_cert, token=token)
        self.cond = threading.Condition()
        self.credits = 0
        self.granted = 0  # total credits this stream was granted
        self.peak_credits = 0  # the most this stream ever held at once (its share of the buffer)
        self.sent = 0  # total trajectories sent on this stream (never > granted)
        self.acks: dict[int, trajectory_pb2.Ack] = {}
        # While send() sleeps, the reader sends what the credits allow (`TrajectoryClient._pump`)
        # and wakes it only when all is acked; else it wakes a waiter on any credit.
        self.pump, self.pump_error = None, None
        self.ready = False  # the hello was answered
        self.ended = False
        self.error: grpc.RpcError | None = None
        self.learner_version = -1
        self.incarnation = ""  # the learner process answering (trajectory.proto Ack)
        self.durable_version = 0
        self._requests: queue.SimpleQueue = queue.SimpleQueue()  # C: a cheap hand-off
        self._closed = threading.Event()
        stub = trajectory_pb2_grpc.TrajectoryServiceStub(self.channel)
        self.call = stub.Stream(self._request_iter())
        self._requests.put(
            trajectory_pb2.TrajectoryBatch(hello=trajectory_pb2.Hello(worker_id=worker_id))
        )
        self._reader = threading.Thread(
            target=self._read, name=f"traj-acks-{worker_id}", daemon=True
        )
        self._reader.start()

    def _request_iter(self) -> Iterator[trajectory_pb2.TrajectoryBatch]:
        while not self._closed.is_set():
            try:
                item = self._requests.get(timeout=0.5)
            except queue.Empty:
                continue
            if item is None:
                return
            yield item

    def _read(self) -> None:
        error = None
        try:
            for ack in self.call:
                with self.cond:
                    self.credits += ack.credits
                    self.granted += ack.credits
                    self.peak_credits = max(self.peak_credits, self.credits)
                    self.learner_version = ack.learner_version
                    self.incarnation = ack.incarnation or self.incarnation
                    self.durable_version = max(self.durable_version, ack.durable_version)
                    if ack.batch_seq:
                        self.acks[ack.batch_seq] = ack
                    woken = self._pumped() if self.pump is not None else self.credits > 0
                    if not self.ready or woken:
                        self.ready = True
                        self.cond.notify_all()
        except grpc.RpcError as exc:
            error = exc
        with self.cond:
            self.ended = True
            self.error = error
            self.cond.notify_all()

    def _pumped(self) -> bool:
        try:
            return self.pump()
        except Exception as exc:  # e.g. a trajectory that cannot be encoded: send() raises it
            self.pump, self.pump_error = None, exc
            return True

    def put(self, batch: trajectory_pb2.TrajectoryBatch, n: int) -> None:
        """Queue a batch of `n` trajectories; caller holds `cond` and has checked credits."""
        if n > self.credits or self.sent + n > self.granted:
            raise RuntimeError("trajectory client: refusing to send beyond granted credits")
        self.credits -= n
        self.sent += n
        self._requests.put(batch)

    def close(self) -> None:
        self._requests.put(None)  # half-close: the server ends the stream cleanly
        self._closed.set()
        self.call.cancel()
        self.channel.close()
