"""The loop without Ray: a LearnerService and a RolloutWorker in one process, talking over
real gRPC on port 0, with the news-feed readers as the reward source."""

import threading

import pytest
import torch

from rewardloop.actors.rollout import RolloutWorker
from rewardloop.actors.trajectory_client import TrajectoryClient
from rewardloop.config import load_config
from rewardloop.feedback.sources.for_task import train_reward_source
from rewardloop.learner.service import LearnerService
from rewardloop.modeling import load_policy
from rewardloop.tasks import get_task


@pytest.fixture
def cfg(model_cache, tmp_path):
    return load_config(
        None,
        [
            f"model.cache_dir={model_cache}",
            "learner.max_steps=4",
            "learner.wait_timeout_s=60",
            f"out={tmp_path}",
        ],
    )


@pytest.mark.parametrize("weight_sync", ["object_store", "grpc"])
def test_worker_feeds_learner_and_picks_up_new_weights(cfg, weight_sync):
    from rewardloop.config import replace

    torch.set_num_threads(1)
    cfg = replace(cfg, rollout={"weight_sync": weight_sync})
    model, tokenizer, _ = load_policy(cfg.model)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    published: dict = {}
    service = LearnerService(cfg, model, tokenizer, publish=lambda v, s: published.update({v: s}))
    address = service.start()
    if weight_sync == "grpc":
        from rewardloop.actors.weight_client import WeightClient

        weight_client = WeightClient(service.weight_address, timeout_s=10)
        weights = weight_client.poll
    else:

        def weights(have):
            newest = max(published)
            return (newest, published[newest]) if newest > have else None

    worker_model, _, _ = load_policy(cfg.model)
    client = TrajectoryClient(address, "w0", timeout_s=20, batch_size=cfg.rollout.send_batch_size)
    worker = RolloutWorker(
        "w0",
        cfg,
        worker_model,
        tokenizer,
        get_task(cfg.task).prompts(cfg),
        train_reward_source(cfg, seed=1),
        client,
        weights=weights,
        seed=1,
    )
    stop = threading.Event()
    runner = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    service.start_training(4)
    runner.start()
    assert service.done.wait(120), service.status()
    stop.set()
    runner.join(30)
    client.close()
    service.stop()

    assert service.error == ""
    assert service.version == 4 and len(service.metrics) == 4
    assert max(published) == 4
    assert any(
        not torch.equal(initial[k], v) for k, v in service.trainer.model.state_dict().items()
    )
    assert worker.counters["weight_swaps"] >= 2  # initial weights, then at least one newer version
    assert worker.version >= 1
    assert all(m["lag_mean"] <= cfg.learner.max_staleness for m in service.metrics)
    assert (
        service.metrics[-1]["trajectories"]
        == 4 * cfg.learner.groups_per_step * cfg.rollout.group_size
    )
    assert worker.counters["rejected"] == 0
    from rewardloop.tasks.newsfeed.readers import READER_BY_NAME

    seen = {k for m in service.metrics for k in m["reward_by_key"]}
    assert seen and seen <= set(READER_BY_NAME)
