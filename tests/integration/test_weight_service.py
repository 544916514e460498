"""WeightService end to end: real WeightServer on port 0 and a real WeightClient."""

from __future__ import annotations

import hashlib
import os
import threading
import time

import pytest
import safetensors.torch
import torch

from rewardloop import grpc_util, weight_wire
from rewardloop.actors.weight_client import WeightClient
from rewardloop.errors import InvalidInput, Unavailable
from rewardloop.learner.weight_server import WeightServer
from rewardloop.pb import weights_pb2, weights_pb2_grpc
from rewardloop.weight_wire import state_dict_to_bytes


def tiny_state(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"wte.weight": torch.randn(16, 8, generator=g), "ln.bias": torch.randn(8, generator=g)}


def next_within(it, timeout_s: float = 10.0):
    """next(it) on a helper thread, so a broken stream fails the test instead of hanging it."""
    out: list = []
    t = threading.Thread(target=lambda: out.append(next(it)), daemon=True)
    t.start()
    t.join(timeout_s)
    assert out, f"no item within {timeout_s}s"
    return out[0]


@pytest.fixture
def server():
    ws = WeightServer(chunk_bytes=1 << 20)
    ws.start()
    yield ws
    ws.stop(grace_s=0.5)


def test_publish_then_poll_returns_equal_tensors(server):
    state = tiny_state(1)
    server.publish(1, state_dict_to_bytes(state))
    with WeightClient(server.address, timeout_s=5.0) as client:
        version, got = client.poll(-1)
        assert version == 1 and set(got) == set(state)
        for name, tensor in state.items():
            assert torch.equal(got[name], tensor)
        assert client.poll(1) is None  # nothing newer than what we hold


def test_poll_before_any_publish_is_none(server):
    with WeightClient(server.address, timeout_s=5.0) as client:
        assert client.poll(-1) is None


def test_state_dict_published_directly_reaches_a_plain_protobuf_client(server):
    """publish() takes the state dict itself; the pre-serialized chunks are ordinary
    WeightChunk messages to the generated stub (any gRPC client of weights.proto)."""
    state = tiny_state(3)
    server.publish(4, state)
    channel = grpc_util.new_channel(server.address)
    try:
        stub = weights_pb2_grpc.WeightServiceStub(channel)
        request = weights_pb2.SubscribeRequest(have_version=-1, once=True)
        chunks = list(stub.Subscribe(request, timeout=5.0))
    finally:
        channel.close()
    payload = b"".join(c.data for c in chunks)
    assert {c.version for c in chunks} == {4} and [c.index for c in chunks] == [0]
    assert chunks[0].digest == weight_wire.payload_digest(payload)
    got = safetensors.torch.load(payload)
    assert set(got) == set(state) and all(torch.equal(got[k], v) for k, v in state.items())


def test_wait_for_version_is_pushed_the_version_published_while_it_waits(server):
    server.publish(1, tiny_state(1))
    with WeightClient(server.address, timeout_s=5.0) as client:
        assert client.wait_for_version(1, timeout_s=0.2) is None  # nothing newer came
        out: list = []
        waiter = threading.Thread(target=lambda: out.append(client.wait_for_version(1, 30.0)))
        waiter.start()
        deadline = time.monotonic() + 10.0
        while server.stats()["subscribes"] < 2 and time.monotonic() < deadline:
            time.sleep(0.01)  # until the long-poll is held by the server
        time.sleep(0.05)
        assert waiter.is_alive()  # it waits for a version, not for its timeout
        server.publish(2, tiny_state(2))
        waiter.join(timeout=10.0)
    assert not waiter.is_alive() and out and out[0] is not None
    version, got = out[0]
    assert version == 2 and torch.equal(got["wte.weight"], tiny_state(2)["wte.weight"])


def test_large_payload_round_trips_with_its_digest(server):
    payload = os.urandom(20 * 1024 * 1024 + 123)  # not a multiple of the chunk size
    server.publish(7, payload)
    with WeightClient(server.address, timeout_s=20.0) as client:
        version, data = client.poll_bytes(-1)
    assert version == 7
    assert hashlib.sha256(data).hexdigest() == hashlib.sha256(payload).hexdigest()
    assert server.stats()["chunks_sent"] == 21


def test_follow_sees_each_new_version(server):
    server.publish(1, state_dict_to_bytes(tiny_state(1)))
    with WeightClient(server.address, timeout_s=5.0) as client:
        it = client.follow(-1)
        v1, _ = next_within(it)
        server.publish(2, state_dict_to_bytes(tiny_state(2)))
        v2, got = next_within(it)
        it.close()
    assert (v1, v2) == (1, 2)
    assert torch.equal(got["wte.weight"], tiny_state(2)["wte.weight"])


def test_slow_subscriber_skips_versions(server):
    server.publish(1, b"v1" * 100)
    with WeightClient(server.address, timeout_s=20.0) as client:
        it = client.follow_bytes(-1)
        assert next_within(it)[0] == 1
        # The subscriber stops reading. Version 2 is far larger than what gRPC buffers for an
        # unread stream, so the server is still sending it while 3, 4 and 5 are published.
        server.publish(2, os.urandom(24 * 1024 * 1024))
        deadline = time.monotonic() + 10.0
        while server.stats().get("chunks_sent", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)  # until the server is sending version 2
        for v in (3, 4, 5):
            server.publish(v, bytes([v]) * 1000)
            time.sleep(0.05)
        seen = [1]
        while seen[-1] != 5:
            seen.append(next_within(it)[0])
        it.close()
    assert seen == sorted(set(seen))  # versions only increase
    assert 3 not in seen and 4 not in seen  # skipped, not queued


def test_versions_must_increase(server):
    server.publish(3, b"x")
    with pytest.raises(InvalidInput, match="version"):
        server.publish(3, b"y")
    with pytest.raises(InvalidInput, match="payload"):
        server.publish(4, b"")


def test_health_and_stop_ends_followers(server):
    assert grpc_util.check_health(server.address) == "SERVING"
    assert grpc_util.check_health(server.address, "rewardloop.pb.WeightService") == "SERVING"
    server.publish(1, b"w" * 10)
    client = WeightClient(server.address, timeout_s=5.0, max_retries=1)
    it = client.follow_bytes(-1)
    assert next_within(it)[0] == 1
    errors: list = []

    def drain() -> None:
        try:
            next(it)
        except Unavailable as exc:
            errors.append(exc)

    follower = threading.Thread(target=drain, daemon=True)
    follower.start()
    time.sleep(0.1)  # the follower is now waiting on the server for version 2
    server.stop(grace_s=0.5)
    follower.join(timeout=10.0)
    assert not follower.is_alive() and len(errors) == 1
    client.close()
    with WeightClient(server.address, timeout_s=1.0, max_retries=0) as dead:
        with pytest.raises(Unavailable):
            dead.poll(-1)
