"""Each learning algorithm learns on the news-feed task, and `max_staleness: 0` is on-policy.

The loop runs without Ray: a LearnerService and a RolloutWorker in one process over real gRPC
(port 0), with the news-feed readers as the reward source. To stay cheap, a run trains on one
reader's prompts: pleasing one reader only needs the policy to favour that reader's two topics,
which shows within tens of steps, whereas telling three readers apart takes a ~150-step plateau
first (that full task is the bench in bench/README.md, "Algorithms x modes"). The held-out
rate is the noise-free expectation over held-out feed moments, so it is a deterministic
function of the weights and the seeds.
"""

from __future__ import annotations

import threading

import pytest
import torch

from rewardloop.actors.rollout import RolloutWorker
from rewardloop.actors.trajectory_client import TrajectoryClient
from rewardloop.config import ALGORITHMS, RunConfig, load_config
from rewardloop.feedback.evaluation import evaluate_policy
from rewardloop.feedback.sources.for_task import train_reward_source
from rewardloop.learner.service import LearnerService
from rewardloop.modeling import load_policy
from rewardloop.prompts import PromptSource
from rewardloop.tasks import get_task

READER = "bob"
STEPS = 60


def _one_reader(cfg: RunConfig, reader: str) -> PromptSource:
    full = get_task(cfg.task).prompts(cfg)
    return PromptSource(
        [p for p in full.train if p.key == reader], [p for p in full.evaluation if p.key == reader]
    )


def _held_out_rate(cfg: RunConfig, model, tokenizer, prompts: PromptSource) -> float:
    result = evaluate_policy(
        model,
        tokenizer,
        prompts.evaluation,
        train_reward_source(cfg, seed=99),
        samples_per_prompt=8,
        max_new_tokens=cfg.rollout.max_new_tokens,
        seed=7,
    )
    return result["by_key"][READER]


def run_loop(cfg: RunConfig, steps: int, prompts: PromptSource | None = None):
    """Train `steps` optimizer steps with one worker; returns (service, worker)."""
    torch.set_num_threads(1)
    prompts = prompts or get_task(cfg.task).prompts(cfg)
    model, tokenizer, _ = load_policy(cfg.model)
    published: dict[int, dict] = {}
    lock = threading.Lock()

    def publish(version: int, state: dict) -> None:
        with lock:
            published[version] = state

    def weights(have: int):
        with lock:
            newest = max(published)
            return (newest, published[newest]) if newest > have else None

    service = LearnerService(cfg, model, tokenizer, publish=publish)
    address = service.start()
    worker_model, _, _ = load_policy(cfg.model)
    client = TrajectoryClient(address, "w0", timeout_s=30, batch_size=cfg.rollout.send_batch_size)
    worker = RolloutWorker(
        "w0",
        cfg,
        worker_model,
        tokenizer,
        prompts,
        train_reward_source(cfg, seed=cfg.seed + 1),
        client,
        weights=weights,
        seed=cfg.seed + 1,
    )
    stop = threading.Event()
    runner = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    service.start_training(steps)
    runner.start()
    try:
        assert service.done.wait(600), service.status()
    finally:
        stop.set()
        client.abort()
        runner.join(60)
        client.close()
        service.stop()
    assert service.error == ""
    return service, worker


@pytest.fixture
def base_overrides(model_cache, tmp_path):
    return [f"model.cache_dir={model_cache}", "learner.wait_timeout_s=120", f"out={tmp_path}"]


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_algorithm_raises_the_readers_like_rate(algorithm, base_overrides):
    cfg = load_config(
        None, [*base_overrides, f"learner.algorithm={algorithm}", f"learner.max_steps={STEPS}"]
    )
    prompts = _one_reader(cfg, READER)
    base_model, tokenizer, _ = load_policy(cfg.model)
    before = _held_out_rate(cfg, base_model, tokenizer, prompts)

    service, _ = run_loop(cfg, STEPS, prompts)
    after = _held_out_rate(cfg, service.trainer.model, tokenizer, prompts)

    assert len(service.metrics) == STEPS and service.version == STEPS
    assert after >= before + 0.15, f"{algorithm}: held-out like rate {before:.3f} -> {after:.3f}"
    assert all(m["lag_max"] <= cfg.learner.max_staleness for m in service.metrics)
    assert all(m["skipped"] == 0 for m in service.metrics)


@pytest.mark.slow
def test_max_staleness_zero_is_on_policy_and_synchronous(base_overrides):
    steps = 8
    cfg = load_config(
        None, [*base_overrides, "learner.max_staleness=0", f"learner.max_steps={steps}"]
    )
    service, worker = run_loop(cfg, steps)

    assert [m["lag_max"] for m in service.metrics] == [0] * steps
    assert service.metrics[-1]["dropped_stale"] == 0
    stats = service.buffer.stats()
    assert stats["dropped_stale"] == 0 and stats["rejected_total"] == 0
    assert stats["lag_hist"] == {0: steps * cfg.learner.groups_per_step * cfg.rollout.group_size}
    # synchronous: the worker fed each version one generation, so it took every version
    assert worker.counters["rejected"] == 0
    assert worker.counters["generations"] <= steps + 1
    # step k trains on version k-1's data: the worker must have loaded versions 1..steps-1
    # (version 0 is the model it started with; the last published one it may never need)
    assert worker.counters["weight_swaps"] >= steps - 1
    # on-policy: the learner's log-probs are the behavior log-probs (ratio 1, nothing clipped)
    assert max(m["kl_behavior"] for m in service.metrics) < 1e-4
    assert max(m["clip_frac"] for m in service.metrics) == 0.0
