"""The Trainer learns a toy preference with every algorithm, guards against non-finite steps,
and round-trips its state."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from rewardloop.config import LearnerConfig
from rewardloop.learner.trainer import Trainer
from rewardloop.sampling import sample_completions
from rewardloop.trajectory import Trajectory

EOS = PAD = 0
GOOD = 7
PROMPT = [3, 4, 5]


def tiny_model():
    torch.manual_seed(0)
    cfg = GPT2Config(
        n_layer=1,
        n_embd=32,
        n_head=4,
        n_positions=32,
        vocab_size=16,
        bos_token_id=EOS,
        eos_token_id=EOS,
    )
    return GPT2LMHeadModel(cfg)


def p_good(model) -> float:
    with torch.no_grad():
        logits = model(torch.tensor([PROMPT])).logits[0, -1]
    return torch.softmax(logits, -1)[GOOD].item()


def rollout(model, version, n_groups=4, group_size=8, seed=0):
    samples = sample_completions(
        model,
        [PROMPT] * n_groups,
        group_size,
        3,
        EOS,
        PAD,
        generator=torch.Generator().manual_seed(seed),
    )
    groups = [[] for _ in range(n_groups)]
    for i, s in enumerate(samples):
        reward = 1.0 if s.completion_ids[0] == GOOD else 0.0
        groups[s.prompt_index].append(
            Trajectory(
                id=f"{seed}-{i}",
                group_id=f"{seed}-{s.prompt_index}",
                prompt_ids=PROMPT,
                completion_ids=s.completion_ids,
                behavior_logprobs=s.logprobs,
                reward=reward,
                policy_version=version,
                group_size=group_size,
            )
        )
    return groups


@pytest.mark.parametrize("algorithm", ["grpo", "rloo", "reinforce", "ppo"])
def test_each_algorithm_learns_the_preferred_token(algorithm):
    torch.set_num_threads(1)
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    start = p_good(model)
    trainer = Trainer(model, LearnerConfig(algorithm=algorithm, lr=2e-2, max_steps=25), pad_id=PAD)
    for step in range(25):
        metrics = trainer.step(rollout(model, trainer.version, seed=step))
        assert metrics["skipped"] == 0
    assert trainer.version == 25
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert p_good(model) > max(0.5, 3 * start), (start, p_good(model))


def test_non_finite_loss_skips_the_step_and_says_why():
    model = tiny_model()
    trainer = Trainer(model, LearnerConfig(lr=1e-2), pad_id=PAD)
    groups = rollout(model, 0)
    with torch.no_grad():
        model.transformer.wte.weight[PROMPT[0]] = float("nan")
    before = model.transformer.wpe.weight.detach().clone()
    metrics = trainer.step(groups)
    assert metrics["skipped"] == 1.0
    assert trainer.version == 0 and trainer.steps_skipped == 1
    assert "non-finite" in trainer.last_skip_reason
    assert torch.equal(before, model.transformer.wpe.weight.detach())


def test_kl_to_reference_is_reported_and_grows_as_policy_moves():
    model = tiny_model()
    trainer = Trainer(model, LearnerConfig(lr=5e-2, kl_coef=0.1), pad_id=PAD)
    first = trainer.step(rollout(model, 0, seed=1))["kl_ref"]
    for s in range(2, 8):
        last = trainer.step(rollout(model, trainer.version, seed=s))["kl_ref"]
    assert first == pytest.approx(0.0, abs=1e-6)
    assert last > first


def test_trainer_state_round_trip():
    model = tiny_model()
    trainer = Trainer(model, LearnerConfig(lr=1e-2), pad_id=PAD)
    trainer.step(rollout(model, 0))
    state = trainer.trainer_state()
    other = Trainer(tiny_model(), LearnerConfig(lr=1e-2), pad_id=PAD)
    other.load_trainer_state(state)
    assert other.version == 1
    assert (
        other.optimizer.state_dict()["state"].keys()
        == trainer.optimizer.state_dict()["state"].keys()
    )


def test_autocast_is_refused_on_the_cpu():
    with pytest.raises(ValueError, match="compute_dtype"):
        Trainer(tiny_model(), LearnerConfig(), pad_id=PAD, compute_dtype=torch.bfloat16)
