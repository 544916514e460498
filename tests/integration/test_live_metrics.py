"""Live Prometheus metrics on real servers (port 0): the learner's and the gateway's /metrics
after real traffic, and `rewardloop status` against a live and a dead endpoint."""

from __future__ import annotations

import json
import re
import socket
import urllib.request
from pathlib import Path

import pytest
import torch
from ingest_testutil import traj, wait_until

from rewardloop import cli
from rewardloop.actors.trajectory_client import TrajectoryClient
from rewardloop.config import FeedbackConfig, load_config
from rewardloop.errors import Unauthenticated
from rewardloop.feedback.gateway.server import FeedbackGateway
from rewardloop.learner.service import LearnerService
from rewardloop.metrics import record_endpoints, scrape
from rewardloop.modeling import load_policy

TOKEN = "metrics-test-token"
G = 2  # group size


README = Path(__file__).resolve().parents[2] / "README.md"


def documented(gateway: bool) -> set[str]:
    """The metric names of README's Live metrics table: the gateway's or the learner's."""
    section = README.read_text().split("## Live metrics", 1)[1].split("\n## ", 1)[0]
    names = set(re.findall(r"^\| `(rewardloop_[a-z_]+)", section, re.M))
    return {n for n in names if n.startswith("rewardloop_feedback_") == gateway}


def exported(samples) -> set[str]:
    return {re.sub(r"_(bucket|count|sum)$", "", n) for n, _, _ in samples}


def value(samples, name, **labels) -> float:
    found = [
        v for n, lab, v in samples if n == name and all(lab.get(k) == x for k, x in labels.items())
    ]
    assert found, f"{name}{labels} not exported; have {sorted({n for n, _, _ in samples})}"
    return found[0]


def group(gid: str, version: int) -> list:
    return [
        traj(f"{gid}-{i}", gid, version=version, group_size=G, reward=float(i)) for i in range(G)
    ]


@pytest.fixture
def learner(model_cache, tmp_path):
    torch.set_num_threads(1)
    cfg = load_config(
        None,
        [
            f"model.cache_dir={model_cache}",
            f"rollout.group_size={G}",
            "learner.groups_per_step=1",
            "learner.max_steps=2",
            "learner.wait_timeout_s=60",
            f"learner.token={TOKEN}",
            "rollout.weight_sync=grpc",
            f"out={tmp_path}",
        ],
    )
    model, tokenizer, _ = load_policy(cfg.model)
    service = LearnerService(cfg, model, tokenizer)
    service.start()
    yield service
    service.stop()


def test_learner_metrics_after_two_steps(learner):
    url = learner.live.url
    assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
    learner.start_training(2)
    with TrajectoryClient(learner.ingest.address, "w0", timeout_s=20, token=TOKEN) as client:
        client.send(group("g1", 0))
        wait_until(lambda: learner.version >= 1, 60, "step 1")
        client.send(group("g2", 1))
        assert learner.done.wait(60), learner.status()
        before = scrape(url)
        assert not [n for n, _, _ in before if n == "rewardloop_ingest_rejected_total"]
        bad = traj("bad", "g3", version=2, group_size=G, completion_ids=[10**6, 1])
        assert client.send([bad]).rejected
    with pytest.raises(Unauthenticated):
        with TrajectoryClient(learner.ingest.address, "w1", timeout_s=5) as anon:
            anon.send(group("g4", 2))
    learner.live.set_driver("like_rate", 0.75, workers=3)

    samples = scrape(url)
    assert learner.error == ""
    assert value(samples, "rewardloop_learner_steps_total") == 2
    assert value(samples, "rewardloop_learner_version") == 2
    assert value(samples, "rewardloop_trajectories_trained_total") == 2 * G
    assert value(samples, "rewardloop_tokens_trained_total") == 2 * G * 2
    assert value(samples, "rewardloop_trajectories_per_second") > 0
    assert value(samples, "rewardloop_tokens_per_second") > 0
    assert value(samples, "rewardloop_reward_mean") == pytest.approx(0.5)
    assert value(samples, "rewardloop_policy_lag_mean") == 0
    assert value(samples, "rewardloop_policy_lag_max") == 0
    assert 0 <= value(samples, "rewardloop_learner_wait_fraction") <= 1
    assert value(samples, "rewardloop_trajectories_dropped_stale_total") == 0
    assert value(samples, "rewardloop_buffer_trajectories") == 0
    assert value(samples, "rewardloop_buffer_capacity") == G
    assert value(samples, "rewardloop_ingest_trajectories_total", outcome="accepted") == 2 * G
    assert value(samples, "rewardloop_ingest_rejected_total", reason="completion_ids") == 1
    assert value(samples, "rewardloop_unauthenticated_total", server="ingest") == 1
    assert value(samples, "rewardloop_unauthenticated_total", server="weights") == 0
    assert value(samples, "rewardloop_streams_refused_busy_total", server="ingest") == 0
    assert value(samples, "rewardloop_weight_sync_seconds_count") == 2
    assert value(samples, "rewardloop_weight_sync_seconds_sum") > 0
    assert value(samples, "rewardloop_eval_metric", metric="like_rate") == 0.75
    assert value(samples, "rewardloop_rollout_workers") == 3
    assert exported(samples) == documented(gateway=False)


def test_learner_metrics_off_and_stop_frees_the_port(model_cache, tmp_path):
    cfg = load_config(None, [f"model.cache_dir={model_cache}", "learner.metrics_port=-1"])
    model, tokenizer, _ = load_policy(cfg.model)
    service = LearnerService(cfg, model, tokenizer)
    service.start()
    try:
        assert service.live.url == ""
    finally:
        service.stop()


@pytest.fixture
def gateway(tmp_path):
    cfg = FeedbackConfig(
        store_path=str(tmp_path / "fb.sqlite3"), http_port=0, grpc_port=0, token=TOKEN
    )
    gw = FeedbackGateway(cfg)
    gw.start()
    yield gw
    gw.stop()


def _post(url: str, body: dict, token: str | None = TOKEN) -> int:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_gateway_metrics_after_publish_and_rating(gateway):
    http, url = gateway.addresses()["http_url"], gateway.addresses()["metrics_url"]
    items = [{"id": f"i{k}", "prompt": "p", "completion": "c"} for k in range(3)]
    assert _post(f"{http}/v1/publish", {"items": items, "publisher": "w0"}) == 200
    rating = {"item_id": "i0", "value": 1.0, "rater": "r1"}
    assert _post(f"{http}/v1/ratings", rating) == 200
    assert _post(f"{http}/v1/ratings", rating, token=None) == 401
    assert _post(f"{http}/v1/ratings", {**rating, "value": 7}) == 400

    samples = scrape(url)
    assert value(samples, "rewardloop_feedback_published_total") == 3
    assert value(samples, "rewardloop_feedback_rated_total") == 1
    assert value(samples, "rewardloop_feedback_pending") == 2
    assert value(samples, "rewardloop_feedback_expired_total", outcome="drop") == 0
    assert value(samples, "rewardloop_feedback_unauthenticated_total") == 1
    assert value(samples, "rewardloop_feedback_request_errors_total", kind="invalid") == 1
    assert value(samples, "rewardloop_feedback_latency_seconds_count") == 1
    assert value(samples, "rewardloop_feedback_latency_seconds_sum") >= 0
    assert exported(samples) == documented(gateway=True)


def test_status_prints_a_live_runs_table(gateway, tmp_path, capsys):
    record_endpoints(tmp_path, ingest="127.0.0.1:1")  # another writer's key survives the merge
    record_endpoints(tmp_path, gateway_metrics=gateway.addresses()["metrics_url"])
    assert json.loads((tmp_path / "endpoints.json").read_text())["ingest"] == "127.0.0.1:1"
    assert cli.main(["status", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["source", "metric", "labels", "value"]
    assert any(line.split()[:2] == ["gateway", "feedback_pending"] for line in out.splitlines())
    assert "_bucket" not in out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_status_of_a_dead_run_fails_with_a_message(tmp_path, capsys):
    assert cli.main(["status", str(tmp_path)]) == 1
    assert "endpoints.json not found" in capsys.readouterr().err
    dead = f"http://127.0.0.1:{_free_port()}/metrics"
    record_endpoints(tmp_path, learner_metrics=dead)
    assert cli.main(["status", str(tmp_path), "--timeout", "2"]) == 1
    err = capsys.readouterr().err
    assert "learner metrics at" in err and "still running" in err


def test_a_ray_run_records_its_endpoint_and_status_reads_it(model_cache, ray_local, tmp_path):
    from rewardloop.cluster.run import Run

    cfg = load_config(
        None,
        [
            f"model.cache_dir={model_cache}",
            f"out={tmp_path}",
            "learner.max_steps=2",
            "eval.every_steps=0",
            "eval.samples_per_prompt=2",
            "rollout.num_workers=1",
        ],
    )
    run = Run(cfg, progress=False)
    try:
        run.prepare()
        run.connect()
        run.launch()
        recorded = json.loads((tmp_path / "endpoints.json").read_text())
        assert recorded["learner_metrics"].startswith("http://")
        wait_until(
            lambda: any(
                n == "rewardloop_eval_metric" for n, _, _ in scrape(recorded["learner_metrics"])
            ),
            30,
            "the driver's eval metric",
        )
        samples = scrape(recorded["learner_metrics"])
        assert value(samples, "rewardloop_rollout_workers") == 1
        assert 0 <= value(samples, "rewardloop_eval_metric", metric="like_rate") <= 1
        assert cli.main(["status", str(tmp_path)]) == 0
        run.watch()
        run.stop()
        run.save()
        run.finish()
    finally:
        run.close()
    assert cli.main(["status", str(tmp_path), "--timeout", "2"]) == 1  # over: nothing answers


def test_a_taken_metrics_port_is_a_config_error_naming_the_key(tmp_path):
    from rewardloop.errors import ConfigError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = FeedbackConfig(
            store_path=str(tmp_path / "fb.sqlite3"), http_port=0, grpc_port=0, metrics_port=port
        )
        gw = FeedbackGateway(cfg)
        with pytest.raises(ConfigError, match="feedback.metrics_port"):
            gw.start()
        gw.stop()
