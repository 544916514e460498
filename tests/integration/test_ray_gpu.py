"""The whole loop with the learner on a GPU: Ray places the learner actor on the GPU, it trains
in bf16 autocast, and CPU rollout workers get its weights through the object store and over the
gRPC WeightService. Skipped where there is no GPU (CI); run on a GPU machine."""

import pytest
import torch

from rewardloop.config import load_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a cuda GPU")


@pytest.mark.parametrize("weight_sync", ["object_store", "grpc"])
def test_learner_trains_on_the_gpu_and_cpu_workers_follow(
    model_cache, ray_local, tmp_path, weight_sync
):
    from transformers import AutoModelForCausalLM

    from rewardloop.cluster.run import train

    assert ray_local.cluster_resources().get("GPU", 0) >= 1
    cfg = load_config(
        None,
        [
            f"model.cache_dir={model_cache}",
            "model.dtype=bfloat16",
            "learner.max_steps=8",
            "eval.every_steps=4",
            "eval.samples_per_prompt=4",
            "eval.target=0",
            f"rollout.weight_sync={weight_sync}",
            "rollout.num_workers=1",
            f"out={tmp_path}",
        ],
    )
    summary = train(cfg, progress=False)
    assert summary["learner_device"] == "cuda"
    assert summary["steps"] == 8 and summary["error"] == ""
    workers = summary["rollout_workers"]
    assert sum(w["weight_swaps"] for w in workers) >= 2, workers  # workers followed the learner
    assert summary["policy_lag_mean"] <= cfg.learner.max_staleness
    final = AutoModelForCausalLM.from_pretrained(tmp_path / "checkpoint", local_files_only=True)
    base = AutoModelForCausalLM.from_pretrained(summary["base_model"], local_files_only=True)
    assert all(p.dtype == torch.float32 for p in final.parameters())  # float32 master weights
    changed = [n for n, p in final.state_dict().items() if not torch.equal(p, base.state_dict()[n])]
    assert changed, "training on the GPU did not change any parameter"
