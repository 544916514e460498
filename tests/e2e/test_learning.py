"""End to end: the distributed loop (Ray actors, gRPC, object-store weights) makes the readers
happier — parameters change and the held-out mean like rate rises."""

import pytest

from rewardloop.config import load_config


@pytest.mark.slow
def test_training_raises_the_like_rate(model_cache, ray_local, tmp_path):
    from rewardloop.cluster.driver import train

    cfg = load_config(None, [
        f"model.cache_dir={model_cache}", "model.pretrain_seconds=40", "learner.max_steps=60",
        "eval.every_steps=0", "eval.samples_per_prompt=16", f"out={tmp_path}",
    ])
    summary = train(cfg, progress=False)
    start = sum(r["like_rate_start"] for r in summary["readers"].values()) / 3
    end = sum(r["like_rate_end"] for r in summary["readers"].values()) / 3
    assert summary["steps"] == 60
    assert end > start + 0.1, summary["readers"]
