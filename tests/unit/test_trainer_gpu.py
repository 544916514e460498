"""The learner's GPU path: training on cuda (float32 and bf16 autocast with float32 master
weights) learns, and the weights it publishes are CPU copies a CPU worker reproduces exactly.
Skipped where there is no GPU (CI); run on a GPU machine."""

import pytest
import torch
from test_trainer import PAD, p_good, rollout, tiny_model

from rewardloop.config import LearnerConfig
from rewardloop.learner.batching import collate, completion_logits, token_logprobs
from rewardloop.learner.trainer import Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a cuda GPU")


def linear_output_dtypes(model) -> set[torch.dtype]:
    """Record the dtype each GPT-2 projection produces on the next forward pass."""
    seen: set[torch.dtype] = set()
    for module in model.modules():
        if type(module).__name__ == "Conv1D":
            module.register_forward_hook(lambda _m, _i, out: seen.add(out.dtype))
    return seen


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_trainer_learns_and_keeps_float32_master_weights(dtype):
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    start = p_good(model)
    trainer = Trainer(
        model,
        LearnerConfig(lr=2e-2, max_steps=25),
        pad_id=PAD,
        device="cuda",
        compute_dtype=dtype,
    )
    seen = linear_output_dtypes(trainer.model)
    for step in range(25):
        # workers sample on the CPU from the published weights, as rollout actors do
        worker = tiny_model()
        worker.load_state_dict(trainer.state_dict_cpu())
        metrics = trainer.step(rollout(worker, trainer.version, seed=step))
        assert metrics["skipped"] == 0
    assert seen == {dtype}, seen  # bf16 really ran the matmuls in bf16
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    assert all(p.is_cuda for p in trainer.model.parameters())
    state = trainer.state_dict_cpu()
    assert all(v.device.type == "cpu" and v.dtype == torch.float32 for v in state.values())
    assert any(not torch.equal(before[k], state[k]) for k in before)
    worker = tiny_model()
    worker.load_state_dict(state)
    assert p_good(worker) > max(0.5, 3 * start), (start, p_good(worker))


def test_published_weights_reproduce_the_learners_log_probs_on_cpu():
    model = tiny_model()
    trainer = Trainer(model, LearnerConfig(lr=1e-2), pad_id=PAD, device="cuda")
    trainer.step(rollout(tiny_model(), 0, seed=0))
    groups = rollout(tiny_model(), 1, seed=1)
    batch = collate(groups, PAD)
    with torch.no_grad():
        gpu = token_logprobs(completion_logits(trainer.model, batch.to("cuda")), batch.to("cuda"))
        worker = tiny_model()
        worker.load_state_dict(trainer.state_dict_cpu())
        cpu = token_logprobs(completion_logits(worker.eval(), batch), batch)
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-4), (gpu.cpu() - cpu).abs().max()
