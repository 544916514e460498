"""Workers outside the cluster ride out a learner restart (real gRPC servers on port 0).

The learner's servers are stopped and started again on the same port while a client waits:
TrajectoryClient and WeightClient rebuild their channels with backoff for `reconnect_s`, the
pending batch goes through after the restart, a send that gave up carries its trajectories into
the next one, and the external worker reads a run directory's endpoints.json.
"""

from __future__ import annotations

import json
import threading

import pytest
import torch
from ingest_testutil import VOCAB, Version, traj, wait_until

from rewardloop.actors import external
from rewardloop.actors.trajectory_client import TrajectoryClient
from rewardloop.actors.weight_client import WeightClient
from rewardloop.errors import Unavailable
from rewardloop.learner.buffer import TrajectoryBuffer
from rewardloop.learner.ingest_server import IngestServer
from rewardloop.learner.weight_server import WeightServer
from rewardloop.weight_wire import state_dict_to_bytes


def test_pending_batch_goes_through_after_the_learner_restarts():
    buffer = TrajectoryBuffer(capacity=8, max_staleness=1)
    server = IngestServer(buffer, Version(0), vocab_size=VOCAB)
    server.start()
    client = TrajectoryClient(server.address, "ext-1", timeout_s=5.0, max_retries=0, reconnect_s=30)
    out: list = []
    sender = None
    try:
        assert client.send([traj("a")]).accepted == ["a"]
        server.stop(grace_s=0.5)
        sender = threading.Thread(target=lambda: out.append(client.send([traj("b"), traj("c")])))
        sender.start()
        wait_until(lambda: client.stats()["connect_failures"] >= 1, what="a failed reconnect")
        assert sender.is_alive()  # still backing off, not given up
        server.start()  # the same port (GrpcServer keeps the one it bound first)
        sender.join(timeout=20.0)
        assert not sender.is_alive(), "send did not finish after the restart"
    finally:
        client.close()
        server.stop(grace_s=0.5)
        if sender is not None:
            sender.join(timeout=5.0)
    assert sorted(out[0].accepted) == ["b", "c"]
    assert client.stats()["reconnects"] >= 1
    assert buffer.stats()["accepted"] == 3


def test_a_send_that_gave_up_is_carried_into_the_next():
    buffer = TrajectoryBuffer(capacity=8, max_staleness=1)
    server = IngestServer(buffer, Version(0), vocab_size=VOCAB)
    server.start()
    client = TrajectoryClient(server.address, "ext-2", timeout_s=5.0, max_retries=0)
    try:
        assert client.send([traj("a")]).accepted == ["a"]
        server.stop(grace_s=0.5)
        with pytest.raises(Unavailable):
            client.send([traj("b"), traj("c")])  # no reconnect budget: gives up at once
        server.start()
        res = client.send([traj("a"), traj("d")])  # "a" again: the learner says duplicate
        assert sorted(res.accepted) == ["b", "c", "d"] and res.duplicate == ["a"]
        assert client.stats()["carried"] == 2
    finally:
        client.close()
        server.stop(grace_s=0.5)
    assert buffer.stats()["accepted"] == 4


def test_weight_long_poll_survives_a_weight_server_restart():
    server = WeightServer()
    server.start()
    state = {"w": torch.arange(6, dtype=torch.float32)}
    server.publish(0, state_dict_to_bytes(state))
    client = WeightClient(server.address, timeout_s=5.0, max_retries=0, reconnect_s=30)
    out: list = []
    waiter = None
    try:
        assert client.poll(-1)[0] == 0
        server.stop(grace_s=0.5)
        waiter = threading.Thread(target=lambda: out.append(client.wait_for_version(0, 20.0)))
        waiter.start()
        wait_until(lambda: client.reconnects >= 1, what="a failed weights call")
        server.start()
        server.publish(1, state_dict_to_bytes({"w": state["w"] + 1}))
        waiter.join(timeout=25.0)
        assert not waiter.is_alive(), "long-poll did not finish after the restart"
    finally:
        client.close()
        server.stop(grace_s=0.5)
        if waiter is not None:
            waiter.join(timeout=5.0)
    version, got = out[0]
    assert version == 1 and torch.equal(got["w"], state["w"] + 1)


def test_run_dir_endpoints_wait_for_a_live_learner(tmp_path):
    stop = threading.Event()
    endpoints = external.run_dir_endpoints(tmp_path, stop)
    with pytest.raises(Unavailable, match="no learner endpoints"):
        endpoints(0.0)  # no endpoints.json yet
    (tmp_path / "endpoints.json").write_text(json.dumps({"ingest": "", "weights": ""}))
    with pytest.raises(Unavailable):
        endpoints(0.0)  # the run has ended: "" means no learner
    found = {"ingest": "127.0.0.1:1", "weights": "127.0.0.1:2", "learner_metrics": "x"}
    (tmp_path / "endpoints.json").write_text(json.dumps(found))
    assert endpoints(0.0)["ingest"] == "127.0.0.1:1"
    stop.set()
