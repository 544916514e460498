"""The external worker against a real token-protected learner front (IngestServer + WeightServer
on port 0, no Ray): in-process with `--max-generations`, and as a `rewardloop worker` process
that SIGTERM stops cleanly, printing its counters."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from ingest_testutil import wait_until

from rewardloop.actors.external import ExternalWorker, fixed_endpoints
from rewardloop.auth import ServerSecurity
from rewardloop.config import load_config
from rewardloop.errors import Unauthenticated
from rewardloop.feedback.sources.for_task import train_reward_source
from rewardloop.learner.buffer import TrajectoryBuffer
from rewardloop.learner.ingest_server import IngestServer
from rewardloop.learner.weight_server import WeightServer
from rewardloop.modeling import load_policy
from rewardloop.tasks import get_task

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "ext-s3cret"


@pytest.fixture
def learner(model_cache):
    """(cfg, ingest, weights, buffer): the learner's two servers, requiring TOKEN."""
    cfg = load_config(None, [f"model.cache_dir={model_cache}", "learner.max_staleness=4"])
    model, _, _ = load_policy(cfg, cfg.task)
    buffer = TrajectoryBuffer(capacity=2 * cfg.rollout.group_size, max_staleness=4)
    security = ServerSecurity(token=TOKEN)
    vocab = model.get_input_embeddings().num_embeddings
    ingest = IngestServer(
        buffer, lambda: 0, vocab_size=vocab, credit_unit=cfg.rollout.group_size, security=security
    )
    weights = WeightServer(security=security)
    ingest.start()
    weights.start()
    weights.publish(0, model.state_dict())
    yield cfg, ingest, weights, buffer
    ingest.stop(grace_s=0.5)
    weights.stop(grace_s=0.5)


def _worker(cfg, ingest, weights, token: str, endpoints=None, wrap=None) -> ExternalWorker:
    model, tokenizer, _ = load_policy(cfg, cfg.task)
    reward = train_reward_source(cfg, seed=1)
    return ExternalWorker(
        "external-inproc",
        cfg,
        model,
        tokenizer,
        get_task(cfg.task).prompts(cfg),
        wrap(reward) if wrap else reward,
        endpoints or fixed_endpoints(ingest.address, weights.address),
        token=token,
        reconnect_s=0.5,
    )


def test_in_process_worker_sends_one_generation_with_the_token(learner):
    cfg, ingest, weights, buffer = learner
    counters = _worker(cfg, ingest, weights, TOKEN).run(threading.Event(), max_generations=1)
    assert counters["stopped"] == "max_generations" and counters["connected"]
    assert counters["generations"] == 1 and counters["accepted"] == counters["trajectories"] > 0
    assert len(buffer) == counters["accepted"]
    assert weights.stats()["subscribes"] >= 1 and weights.stats()["unauthenticated"] == 0


def test_in_process_worker_with_a_wrong_token_is_refused(learner):
    cfg, ingest, weights, _ = learner
    with pytest.raises(Unauthenticated):
        _worker(cfg, ingest, weights, "wrong").run(threading.Event(), max_generations=1)


class StopsLearnerOnFirstScore:
    """The worker's reward source, wrapped: the first score() call stops the learner's ingest."""

    def __init__(self, inner, ingest: IngestServer):
        self.inner, self.ingest, self.calls = inner, ingest, 0

    def score(self, requests):
        self.calls += 1
        if self.calls == 1:
            self.ingest.stop(grace_s=0.5)
        return self.inner.score(requests)

    def poll(self, timeout_s: float):
        return self.inner.poll(timeout_s)


def test_worker_follows_the_learner_to_a_new_address(learner):
    cfg, old_ingest, weights, _ = learner
    # room for both generations: the first one's (handed over) and the second's
    buffer = TrajectoryBuffer(capacity=8 * cfg.rollout.group_size, max_staleness=4)
    new_ingest = IngestServer(
        buffer, lambda: 0, credit_unit=cfg.rollout.group_size, security=ServerSecurity(TOKEN)
    )
    new_ingest.start()
    asked: list[str] = []

    def endpoints(timeout_s: float) -> dict:  # what a re-read endpoints.json would say
        asked.append(old_ingest.address if not asked else new_ingest.address)
        return {"ingest": asked[-1], "weights": weights.address}

    try:
        stops_old = lambda reward: StopsLearnerOnFirstScore(reward, old_ingest)  # noqa: E731
        worker = _worker(cfg, old_ingest, weights, TOKEN, endpoints, stops_old)
        counters = worker.run(threading.Event(), max_generations=2)
    finally:
        new_ingest.stop(grace_s=0.5)
    seen = (asked, counters, len(buffer))
    assert asked == [old_ingest.address, new_ingest.address], seen
    assert counters["stopped"] == "max_generations" and counters["generations"] == 2, seen
    assert counters["learner"] == new_ingest.address and len(buffer) > 0, seen
    # the first generation's send failed at the old address: the old client's unsent
    # trajectories went on to the new one, so every trajectory is admitted once or still held
    held = buffer.held_ids()
    assert len(held) + counters["unsent"] == counters["trajectories"], seen
    assert new_ingest.stats().get("duplicate", 0) == 0 and counters["carried"] > 0, seen


def test_worker_process_stops_cleanly_on_sigterm(learner, model_cache, tmp_path):
    _, ingest, weights, buffer = learner
    cmd = [sys.executable, "-m", "rewardloop.cli", "worker", "--learner", ingest.address]
    cmd += ["--weights", weights.address, "--set", f"model.cache_dir={model_cache}"]
    cmd += ["--set", "learner.token=env:EXT_TEST_TOKEN", "--reconnect-s", "1"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "EXT_TEST_TOKEN": TOKEN}
    out, err = tmp_path / "worker.out", tmp_path / "worker.err"
    with out.open("w") as fout, err.open("w") as ferr:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fout, stderr=ferr)
    try:
        # the buffer fills (nobody trains here), so the worker ends up waiting for credits
        wait_until(lambda: len(buffer) > 0 or proc.poll() is not None, 120, "trajectories")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, err.read_text()[-3000:]
    counters = json.loads(out.read_text().strip().splitlines()[-1])
    assert counters["stopped"] == "stopped" and counters["accepted"] == len(buffer) > 0
    assert counters["worker_id"].startswith("external-")
