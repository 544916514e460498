"""Shared fixtures: a small default model built once per session, and one local Ray."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TEST_PRETRAIN_SECONDS = 40.0


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> str:
    """A cache dir holding the news-feed default model, pre-trained briefly (built once)."""
    from rewardloop.config import ModelConfig
    from rewardloop.newsfeed.build import ensure_default_model

    cache = os.environ.get("REWARDLOOP_TEST_CACHE") or str(tmp_path_factory.mktemp("model-cache"))
    ensure_default_model(ModelConfig(cache_dir=cache, pretrain_seconds=TEST_PRETRAIN_SECONDS))
    return cache


@pytest.fixture(scope="session")
def ray_local():
    """One real local Ray for the session: 2 CPUs, no dashboard."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield ray
    ray.shutdown()
