"""The rollout loop's waits, without Ray: N workers sharing the learner's credits in whole groups
with nothing arriving too stale, the long-poll for new weights, and `stop` ending every wait.

Workers and a LearnerService run in this process and talk over real gRPC on port 0."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
import torch

from rewardloop.actors.rollout import WAIT_SLICE_S, RolloutWorker
from rewardloop.actors.trajectory_client import TrajectoryClient
from rewardloop.config import load_config
from rewardloop.feedback.sources.for_task import train_reward_source
from rewardloop.learner.service import LearnerService
from rewardloop.modeling import load_policy
from rewardloop.sink import ListSink  # no credits: the worker bounds staleness by counting
from rewardloop.tasks import get_task


class Publisher:
    """Versioned weights in memory: what the learner actor does with the object store."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.versions: dict[int, dict] = {}
        self.polls = 0
        self.waits: list[float] = []  # the timeout of each long-poll call

    def publish(self, version: int, state: dict) -> None:
        with self.cond:
            self.versions[version] = {k: v.clone() for k, v in state.items()}
            self.cond.notify_all()

    def _newest(self, have: int):
        newest = max(self.versions, default=-1)
        return (newest, self.versions[newest]) if newest > have else None

    def poll(self, have: int):
        with self.cond:
            self.polls += 1
            return self._newest(have)

    def wait(self, newer_than: int, timeout_s: float):
        with self.cond:
            self.waits.append(timeout_s)
            self.cond.notify_all()  # lets a test see that a worker is waiting
            self.cond.wait_for(lambda: max(self.versions, default=-1) > newer_than, timeout_s)
            return self._newest(newer_than)


def small_cfg(model_cache, *overrides):
    return load_config(
        None,
        [
            f"model.cache_dir={model_cache}",
            "rollout.group_size=2",
            "rollout.prompts_per_generation=1",
            "rollout.max_new_tokens=4",
            *overrides,
        ],
    )


def make_worker(cfg, policy, sink, publisher, wid="w0", seed=1) -> RolloutWorker:
    model, tokenizer = policy
    return RolloutWorker(
        wid,
        cfg,
        model,
        tokenizer,
        get_task(cfg.task).prompts(cfg),
        train_reward_source(cfg, seed=seed),
        sink,
        weights=publisher.poll,
        seed=seed,
        wait_weights=publisher.wait,
    )


def test_stop_ends_a_wait_for_new_weights(model_cache, policy):
    """Strictly on-policy, and no new version ever comes (the run ended): stop must end the
    wait at once, not after rollout.rpc_timeout_s."""
    cfg = small_cfg(model_cache, "learner.max_staleness=0", "rollout.rpc_timeout_s=120")
    publisher = Publisher()
    publisher.publish(0, policy[0].state_dict())
    worker = make_worker(cfg, policy, ListSink(), publisher)
    stop = threading.Event()
    runner = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    runner.start()
    with publisher.cond:  # the worker generated once on v0 and now long-polls for v1
        assert publisher.cond.wait_for(lambda: publisher.waits, timeout=60)
    stop.set()
    runner.join(timeout=30)
    assert not runner.is_alive(), "run() kept waiting for weights after stop"
    assert worker.counters["generations"] == 1 and worker.version == 0
    assert all(t <= WAIT_SLICE_S for t in publisher.waits)


def test_long_poll_picks_up_a_version_published_while_waiting(model_cache, policy):
    cfg = small_cfg(model_cache, "learner.max_staleness=0", "rollout.rpc_timeout_s=120")
    publisher = Publisher()
    model = policy[0]
    publisher.publish(0, model.state_dict())
    sink = ListSink()
    worker = make_worker(cfg, policy, sink, publisher)
    runner = threading.Thread(
        target=worker.run, args=(threading.Event(), 2), name="worker", daemon=True
    )
    runner.start()
    with publisher.cond:
        assert publisher.cond.wait_for(lambda: publisher.waits, timeout=60)
    newer = {k: v + 0.0 for k, v in model.state_dict().items()}
    publisher.publish(1, newer)
    runner.join(timeout=60)
    assert not runner.is_alive()
    versions = Counter(t.policy_version for t in sink.sent)
    assert versions == {0: 2, 1: 2}  # one group of 2 on each version, the second after the wait
    assert worker.version == 1 and worker.counters["weight_swaps"] == 1  # v0: its own weights
    # It blocked in the long-poll instead of polling every few milliseconds.
    assert publisher.polls <= 3, publisher.polls


@pytest.mark.parametrize("max_staleness", [0, 1])
def test_two_workers_share_credits_without_stale_data(model_cache, max_staleness):
    """Two workers, default sizes (3 groups of 8 per step, 3 prompts per generation) and the
    automatic capacity: groups are never split, nothing is dropped or rejected as stale, and
    both workers feed the learner."""
    torch.set_num_threads(1)
    steps = 6
    cfg = load_config(
        None,
        [
            f"model.cache_dir={model_cache}",
            f"learner.max_staleness={max_staleness}",
            "rollout.num_workers=2",
            "rollout.max_new_tokens=8",
            "learner.wait_timeout_s=60",
        ],
    )
    model, tokenizer, _ = load_policy(cfg.model)
    publisher = Publisher()
    service = LearnerService(cfg, model, tokenizer, publish=publisher.publish)
    address = service.start()
    stop = threading.Event()
    workers, clients, runners = [], [], []
    for i in range(2):
        worker_model, _, _ = load_policy(cfg.model)
        client = TrajectoryClient(address, f"w{i}", timeout_s=30)
        worker = make_worker(cfg, (worker_model, tokenizer), client, publisher, f"w{i}", i + 1)
        workers.append(worker)
        clients.append(client)
        runners.append(threading.Thread(target=worker.run, args=(stop,), daemon=True))
    service.start_training(steps)
    for r in runners:
        r.start()
    try:
        assert service.done.wait(180), service.status()
    finally:
        stop.set()
        for c in clients:
            c.abort()
        for r in runners:
            r.join(timeout=30)
        for c in clients:
            c.close()
        status = service.status()
        service.stop()
    assert service.error == "" and len(service.metrics) == steps
    assert not any(r.is_alive() for r in runners)
    buffer = status["buffer"]
    assert buffer["dropped_stale"] == 0 and buffer["rejected_total"] == 0
    assert buffer["dropped_incomplete"] == 0
    assert all(m["lag_max"] <= max_staleness for m in service.metrics)
    assert sum(w.counters["rejected"] for w in workers) == 0
    # Credits come in whole groups: every generation was of whole groups, within credits.
    for w in workers:
        assert w.counters["trajectories"] == w.counters["groups"] * cfg.rollout.group_size
    assert all(w.counters["accepted"] > 0 for w in workers), [w.counters for w in workers]
