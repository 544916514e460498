"""The learner actor's long-poll for weights on a real local Ray, and the pool's overlapped
start: workers created before the learner is up, started with its endpoints."""

from __future__ import annotations

import time

import pytest

from rewardloop.config import load_config


@pytest.fixture(scope="module")
def actors(model_cache, ray_local, tmp_path_factory):
    from rewardloop.cluster.actors import LearnerActor
    from rewardloop.cluster.placement import learner_options
    from rewardloop.cluster.pool import RolloutPool

    cfg = load_config(
        None,
        [
            f"model.cache_dir={model_cache}",
            "learner.max_staleness=0",
            "learner.max_steps=2",
            "learner.device=cpu",
            "rollout.max_new_tokens=8",
            f"out={tmp_path_factory.mktemp('ray-wait')}",
        ],
    )
    learner = LearnerActor.options(**learner_options(cfg)).remote(cfg)
    pool = RolloutPool(cfg, learner)
    pool.launch(1)  # loads its model while the learner loads its own
    endpoints = ray_local.get(learner.start.remote(), timeout=300)
    yield ray_local, cfg, learner, pool, endpoints
    pool.shutdown()
    ray_local.get(learner.stop.remote(), timeout=60)
    ray_local.kill(learner)


def test_wait_for_version_blocks_until_a_newer_version_is_published(actors):
    ray, cfg, learner, pool, endpoints = actors
    first = ray.get(learner.wait_for_version.remote(-1, 5), timeout=30)
    assert first is not None and first[0] == 0  # already published: answered at once
    assert ray.get(learner.wait_for_version.remote(0, 0.2), timeout=30) is None  # nothing newer
    waiter = learner.wait_for_version.remote(0, 120)
    # A waiting call holds a thread of the "weights" group only: the driver's calls still answer.
    assert ray.get(learner.status.remote(), timeout=30)["version"] == 0
    ready, _ = ray.wait([waiter], timeout=0)
    assert not ready
    pool.start(endpoints)
    ray.get(learner.start_training.remote(cfg.learner.max_steps), timeout=60)
    version, (ref,) = ray.get(waiter, timeout=180)
    assert version >= 1
    assert set(ray.get(ref, timeout=60)) == set(ray.get(first[1][0], timeout=60))

    # The strictly on-policy run finishes; its worker then waits for credits or weights that
    # will never come, and returns its counters on stop instead of timing out.
    deadline = time.monotonic() + 180
    while not ray.get(learner.status.remote(), timeout=30)["done"]:
        assert time.monotonic() < deadline, "training did not finish"
        time.sleep(0.2)
    metrics = ray.get(learner.metrics_since.remote(0), timeout=30)
    assert len(metrics) == 2 and all(m["lag_max"] == 0 for m in metrics)
    assert metrics[-1]["dropped_stale"] == 0
    (stats,) = pool.shutdown()
    assert stats["generations"] >= 2 and stats["rejected"] == 0
    assert stats["weight_swaps"] >= 1
