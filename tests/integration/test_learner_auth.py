"""Secured learner endpoints: bearer token and TLS on real Ingest and Weight servers (port 0).

No server is mocked: real clients with no, a wrong and the right token; health without one;
TLS with a self-signed certificate made here; the non-loopback bind rule; and a short run on a
real local Ray with `learner.token` set (the driver resolves `env:NAME` for its actors).
"""

from __future__ import annotations

import json

import pytest
import torch
from feedback_testutil import self_signed_cert
from ingest_testutil import VOCAB, Version, traj

from rewardloop import grpc_util
from rewardloop.actors.trajectory_client import TrajectoryClient
from rewardloop.actors.weight_client import WeightClient
from rewardloop.auth import ServerSecurity, resolve_token
from rewardloop.config import load_config
from rewardloop.errors import ConfigError, InvalidInput, Unauthenticated, Unavailable
from rewardloop.learner.buffer import TrajectoryBuffer
from rewardloop.learner.ingest_server import SERVICE_NAME, IngestServer
from rewardloop.learner.weight_server import WeightServer
from rewardloop.weight_wire import state_dict_to_bytes

TOKEN = "s3cret-learner-token"


def ingest(security: ServerSecurity | None, host: str = "127.0.0.1") -> IngestServer:
    buffer = TrajectoryBuffer(capacity=4, max_staleness=1)
    return IngestServer(buffer, Version(0), host=host, vocab_size=VOCAB, security=security)


@pytest.fixture
def secured():
    server = ingest(ServerSecurity(token=TOKEN))
    server.start()
    yield server
    server.stop(grace_s=0.5)


@pytest.fixture
def weights():
    server = WeightServer(security=ServerSecurity(token=TOKEN))
    server.start()
    server.publish(1, state_dict_to_bytes({"w": torch.ones(4)}))
    yield server
    server.stop(grace_s=0.5)


@pytest.mark.parametrize("token", ["", "wrong-token"])
def test_stream_without_the_token_is_unauthenticated_and_counted(secured, token):
    client = TrajectoryClient(secured.address, "w1", timeout_s=5.0, token=token)
    with client, pytest.raises(Unauthenticated, match="bearer token"):
        client.send([traj("a")])
    assert secured.stats()["unauthenticated"] == 1
    assert secured.stats().get("streams_total", 0) == 0 and len(secured.buffer) == 0


def test_stream_with_the_token_is_served(secured):
    with TrajectoryClient(secured.address, "w1", timeout_s=5.0, token=TOKEN) as client:
        assert client.send([traj("a"), traj("b")]).accepted == ["a", "b"]
    assert secured.stats()["unauthenticated"] == 0


def test_health_needs_no_token(secured):
    assert grpc_util.check_health(secured.address) == "SERVING"
    assert grpc_util.check_health(secured.address, SERVICE_NAME) == "SERVING"
    assert secured.stats()["unauthenticated"] == 0


@pytest.mark.parametrize("token", ["", "wrong-token"])
def test_subscribe_without_the_token_is_unauthenticated_and_counted(weights, token):
    with WeightClient(weights.address, timeout_s=5.0, token=token) as client:
        with pytest.raises(Unauthenticated, match="bearer token"):
            client.poll(-1)
    assert weights.stats()["unauthenticated"] == 1 and weights.stats().get("subscribes", 0) == 0


def test_subscribe_with_the_token_is_served(weights):
    with WeightClient(weights.address, timeout_s=5.0, token=TOKEN) as client:
        version, state = client.poll(-1)
    assert version == 1 and state["w"].tolist() == [1.0] * 4
    assert weights.stats()["unauthenticated"] == 0


def test_tls_serves_trusting_clients_and_refuses_plaintext(tmp_path):
    cert, key = self_signed_cert(tmp_path)
    security = ServerSecurity(token=TOKEN, tls_cert=cert, tls_key=key)
    server, ws = ingest(security), WeightServer(security=security)
    server.start()
    ws.start()
    try:
        ws.publish(3, state_dict_to_bytes({"w": torch.zeros(2)}))
        secure = {"ca_cert": cert, "token": TOKEN}
        with TrajectoryClient(server.address, "w1", timeout_s=5.0, **secure) as client:
            assert client.send([traj("a")]).accepted == ["a"]
        with WeightClient(ws.address, timeout_s=5.0, **secure) as client:
            assert client.poll(-1)[0] == 3
        plain = TrajectoryClient(server.address, "w2", timeout_s=2.0, max_retries=0, token=TOKEN)
        with plain, pytest.raises(Unavailable):
            plain.send([traj("b")])
        with WeightClient(ws.address, timeout_s=2.0, max_retries=0, token=TOKEN) as client:
            with pytest.raises(Unavailable):
                client.poll(-1)
        assert server.stats()["accepted"] == 1
    finally:
        server.stop(grace_s=0.5)
        ws.stop(grace_s=0.5)


def test_non_loopback_bind_needs_a_token_or_allow_insecure():
    open_server = ingest(ServerSecurity(), host="0.0.0.0")
    with pytest.raises(ConfigError, match="learner.token") as err:
        open_server.start()
    assert "learner.allow_insecure" in str(err.value)
    assert not open_server._grpc.started
    with pytest.raises(ConfigError, match="learner.token"):
        WeightServer(host="0.0.0.0", security=ServerSecurity()).start()
    for security in (ServerSecurity(allow_insecure=True), ServerSecurity(token=TOKEN)):
        server = ingest(security, host="0.0.0.0")
        server.start()
        try:
            assert server.port > 0
        finally:
            server.stop(grace_s=0.5)


def test_learner_config_keys(monkeypatch):
    monkeypatch.setenv("RL_TEST_LEARNER_TOKEN", TOKEN)
    cfg = load_config(None, ["learner.token=env:RL_TEST_LEARNER_TOKEN", "rollout.ca_cert=ca.pem"])
    security = ServerSecurity.from_config(cfg.learner)
    assert security.token == TOKEN and security.section == "learner"
    assert cfg.rollout.ca_cert == "ca.pem"
    monkeypatch.delenv("RL_TEST_LEARNER_TOKEN")
    with pytest.raises(InvalidInput, match="learner.token"):
        resolve_token(cfg.learner.token, "learner.token")
    with pytest.raises(ConfigError, match="learner.tls_cert"):
        load_config(None, ["learner.tls_cert=cert.pem"])


def test_ray_run_trains_with_a_learner_token(model_cache, ray_local, tmp_path, monkeypatch):
    from rewardloop.cluster.run import train

    monkeypatch.setenv("RL_TEST_LEARNER_TOKEN", TOKEN)  # seen by the driver only
    cfg = load_config(
        None,
        [
            f"model.cache_dir={model_cache}",
            "learner.token=env:RL_TEST_LEARNER_TOKEN",
            "learner.max_steps=2",
            "eval.every_steps=0",
            "eval.samples_per_prompt=2",
            "rollout.num_workers=1",
            "rollout.weight_sync=grpc",
            "rollout.max_new_tokens=8",
            f"out={tmp_path}",
        ],
    )
    summary = train(cfg, progress=False)
    assert summary["error"] == "" and summary["steps"] == 2
    steps = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(r["unauthenticated"] == 0 for r in steps if "event" not in r)
    assert TOKEN not in (tmp_path / "config.json").read_text()  # the secret stays env:NAME
