"""The learner's servers under many workers: 64 open streams (and 64 waiting weight long-polls)
plus health, the next stream refused at once with RESOURCE_EXHAUSTED, freed slots reused, and a
graceful stop with every stream still open. Real gRPC on port 0; no sleeps as synchronization.
"""

from __future__ import annotations

import time

import grpc
import pytest
import torch
from ingest_testutil import VOCAB, RawStream, Version, traj, wait_until

from rewardloop import grpc_util
from rewardloop.learner.buffer import TrajectoryBuffer
from rewardloop.learner.ingest_server import SERVICE_NAME, IngestServer
from rewardloop.learner.weight_server import WeightServer
from rewardloop.pb import trajectory_pb2, weights_pb2, weights_pb2_grpc
from rewardloop.weight_wire import SERVICE_NAME as WEIGHTS_SERVICE
from rewardloop.wire import batch_to_proto

STREAMS = 64
EXTRA = 4  # the 65th.. stream attempts, each refused while all 64 are open
DEADLINE_S = 30.0  # every client call's deadline: a hang fails the test, it never blocks it
HEALTH_DEADLINE_S = 1.0


class Worker(RawStream):
    """A lightweight ingest client: one raw bidi stream on its own channel, driven in turn."""

    def __init__(self, address: str, worker_id: str):
        super().__init__(address, timeout_s=DEADLINE_S)
        self.worker_id = worker_id
        self.requests.put(
            trajectory_pb2.TrajectoryBatch(hello=trajectory_pb2.Hello(worker_id=worker_id))
        )

    def send_batch(self, seq: int, tid: str) -> None:
        self.requests.put(batch_to_proto(seq, [traj(tid, worker_id=self.worker_id)]))


def health_latencies(address: str, service: str, n: int = 10) -> list[float]:
    """Seconds each of `n` health checks (a fresh channel each, as a probe does) took."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        assert grpc_util.check_health(address, service, timeout_s=HEALTH_DEADLINE_S) == "SERVING"
        out.append(time.perf_counter() - t0)
    return out


def end_status(call) -> grpc.StatusCode:
    """Read what is left of a stream (credit grants may be queued) up to its error status."""
    for _ in range(1000):
        try:
            next(call)
        except grpc.RpcError as exc:
            return exc.code()
    raise AssertionError("the stream never ended")


def refused_within(first_item, what: str) -> float:
    """Seconds until `first_item()` fails with RESOURCE_EXHAUSTED naming learner.max_streams."""
    t0 = time.perf_counter()
    with pytest.raises(grpc.RpcError) as info:
        first_item()
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, what
    assert "learner.max_streams" in info.value.details(), info.value.details()
    return time.perf_counter() - t0


def test_64_worker_streams_and_health_then_the_next_is_refused_at_once():
    buffer = TrajectoryBuffer(capacity=4 * STREAMS, max_staleness=1)
    server = IngestServer(buffer, Version(0), vocab_size=VOCAB, max_streams=STREAMS)
    server.start()
    workers: list[Worker] = []
    try:
        t0 = time.perf_counter()
        workers = [Worker(server.address, f"w{i}") for i in range(STREAMS)]
        for w in workers:
            assert w.next_ack().batch_seq == 0  # hello answered: the stream is open
        for i, w in enumerate(workers):
            w.send_batch(1, f"t{i}")
        answered = [w.next_ack() for w in workers]
        assert [a.batch_seq for a in answered] == [1] * STREAMS
        assert sum(len(a.accepted) + len(a.rejected) for a in answered) == STREAMS
        assert server.stats()["streams_open"] == STREAMS
        opened_s = time.perf_counter() - t0

        latencies = health_latencies(server.address, SERVICE_NAME)
        assert max(latencies) < HEALTH_DEADLINE_S

        extra = [Worker(server.address, f"x{i}") for i in range(EXTRA)]
        try:
            waits = [
                refused_within(x.next_ack, f"stream {STREAMS + 1 + i}") for i, x in enumerate(extra)
            ]
        finally:
            for x in extra:
                x.close()
        assert max(waits) < 2.0
        assert server.stats()["streams_refused_busy"] == EXTRA
        assert server.stats()["streams_open"] == STREAMS  # the 64 were not disturbed
        health_latencies(server.address, "", n=2)

        # Closing half frees their slots: a new worker is served again.
        for w in workers[: STREAMS // 2]:
            w.close()
        wait_until(lambda: server.stats()["streams_open"] == STREAMS // 2, 10.0, "closed streams")
        late = Worker(server.address, "late")
        workers.append(late)
        assert late.next_ack().batch_seq == 0
        late.send_batch(1, "t-late")
        assert late.next_ack().batch_seq == 1

        # A graceful stop with 33 streams open: each ends with UNAVAILABLE, within the grace.
        t_stop = time.perf_counter()
        server.stop(grace_s=1.0)
        stop_s = time.perf_counter() - t_stop
        assert stop_s < 3.0
        for w in workers[STREAMS // 2 :]:
            assert end_status(w.call) in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
        print(
            f"\n64 streams open+acked {opened_s:.2f}s; health max {max(latencies) * 1e3:.1f} ms "
            f"(median {sorted(latencies)[len(latencies) // 2] * 1e3:.1f} ms); refusal max "
            f"{max(waits) * 1e3:.1f} ms; stop {stop_s:.2f}s"
        )
    finally:
        for w in workers:
            w.close()
        server.stop(grace_s=0.5)


def test_64_waiting_weight_long_polls_and_health_then_the_next_is_refused_at_once():
    server = WeightServer(max_streams=STREAMS)
    server.start()
    channel = grpc_util.new_channel(server.address)
    stub = weights_pb2_grpc.WeightServiceStub(channel)

    def long_poll(have: int):
        request = weights_pb2.SubscribeRequest(have_version=have, once=True, wait_ms=20_000)
        return stub.Subscribe(request, timeout=DEADLINE_S)

    calls = []
    try:
        calls = [long_poll(-1) for _ in range(STREAMS)]
        wait_until(
            lambda: server.stats().get("subscribes", 0) == STREAMS, 10.0, "64 waiting long-polls"
        )
        latencies = health_latencies(server.address, WEIGHTS_SERVICE)
        assert max(latencies) < HEALTH_DEADLINE_S
        extra = long_poll(-1)
        wait = refused_within(lambda: next(extra), "long-poll 65")
        assert wait < 2.0 and server.stats()["refused_busy"] == 1

        # A publish answers all 64 at once; their slots are then free again.
        server.publish(0, {"w": torch.zeros(4)})
        for call in calls:
            chunks = list(call)
            assert chunks and {c.version for c in chunks} == {0}
        calls = [long_poll(0) for _ in range(STREAMS)]  # a second round fits: slots were freed
        wait_until(lambda: server.stats().get("subscribes", 0) == 2 * STREAMS, 10.0, "second round")

        # A graceful stop with 64 long-polls waiting: each ends with UNAVAILABLE, promptly.
        t_stop = time.perf_counter()
        server.stop(grace_s=1.0)
        assert time.perf_counter() - t_stop < 3.0
        for call in calls:
            assert end_status(call) in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
        print(f"\nweights: health max {max(latencies) * 1e3:.1f} ms; refusal {wait * 1e3:.1f} ms")
    finally:
        for call in calls:
            call.cancel()
        channel.close()
        server.stop(grace_s=0.5)
