"""End to end: the distributed loop (Ray actors, gRPC, object-store weights) makes the readers
happier — parameters change and the held-out like rate of every reader rises."""

import pytest
import torch

from rewardloop.config import load_config


@pytest.mark.slow
def test_training_raises_every_readers_like_rate(model_cache, ray_local, tmp_path):
    from transformers import AutoModelForCausalLM

    from rewardloop.cluster.run import train

    cfg = load_config(
        None,
        [
            f"model.cache_dir={model_cache}",
            "learner.max_steps=450",
            "eval.target=0.6",
            "eval.every_steps=20",
            "eval.samples_per_prompt=8",
            f"out={tmp_path}",
        ],
    )
    summary = train(cfg, progress=False)
    readers = summary["readers"]
    assert summary["steps"] < 450, f"never reached 0.6 for every reader: {readers}"
    for name, rates in readers.items():
        assert rates["like_rate_end"] >= 0.6 > rates["like_rate_start"], (name, rates)
    final = AutoModelForCausalLM.from_pretrained(tmp_path / "checkpoint", local_files_only=True)
    base = AutoModelForCausalLM.from_pretrained(summary["base_model"], local_files_only=True)
    base_state = base.state_dict()
    assert any(not torch.equal(p, base_state[n]) for n, p in final.state_dict().items())
