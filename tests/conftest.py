"""Shared fixtures: a small default model built once per session (and loaded once per module), and one local Ray."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def model_cache() -> str:
    """The cache dir holding the news-feed default model, exactly as `make demo` builds it
    (built once per machine; REWARDLOOP_TEST_CACHE points the tests at another cache)."""
    from rewardloop.config import ModelConfig
    from rewardloop.tasks.newsfeed.build import ensure_default_model

    cache = os.environ.get("REWARDLOOP_TEST_CACHE") or ModelConfig().cache_dir
    ensure_default_model(ModelConfig(cache_dir=cache))
    return cache


@pytest.fixture(scope="module")
def policy(model_cache):
    """The default model and tokenizer, loaded once per test module, with one torch thread
    (the rollout and reward-fault tests generate with it directly, no Ray)."""
    import torch

    from rewardloop.config import load_config
    from rewardloop.modeling import load_policy

    torch.set_num_threads(1)
    cfg = load_config(None, [f"model.cache_dir={model_cache}"])
    model, tokenizer, _ = load_policy(cfg.model)
    return model, tokenizer


@pytest.fixture(scope="session")
def ray_local():
    """One real local Ray for the session: 2 CPUs, no dashboard."""
    ray = pytest.importorskip("ray")
    for attempt in range(2):  # a busy machine can make the GCS miss its start-up deadline once
        try:
            ray.init(
                num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False
            )
            break
        except RuntimeError:
            ray.shutdown()
            if attempt:
                raise
    yield ray
    ray.shutdown()
