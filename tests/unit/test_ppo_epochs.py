"""`learner.ppo_epochs`: ppo makes several clipped passes over one batch, and it is one step."""

import pytest
import torch
from test_trainer import PAD, p_good, rollout, tiny_model  # the same toy task (tests/unit)

from rewardloop.config import LearnerConfig
from rewardloop.errors import ConfigError
from rewardloop.learner.trainer import Trainer


def adam_steps(trainer: Trainer) -> int:
    return max(int(s["step"]) for s in trainer.optimizer.state_dict()["state"].values())


def test_ppo_epochs_are_several_clipped_passes_within_one_step():
    torch.set_num_threads(1)
    model = tiny_model()
    trainer = Trainer(model, LearnerConfig(algorithm="ppo", lr=5e-2, ppo_epochs=4), pad_id=PAD)
    metrics = trainer.step(rollout(model, 0, seed=3))
    assert trainer.version == 1 and metrics["skipped"] == 0
    assert adam_steps(trainer) == 4 and metrics["ppo_epochs_done"] == 4
    assert trainer.scheduler.last_epoch == 1  # the schedule counts steps, not passes
    # the first pass is on-policy (ratio 1: nothing clipped); later passes move the ratio away
    # from the behavior log-probs and the clip stops the tokens that went too far
    assert metrics["clip_frac"] == 0.0
    assert metrics["clip_frac_last"] > 0.0


def test_more_ppo_epochs_move_the_policy_further_on_the_same_batch():
    torch.set_num_threads(1)
    moved = {}
    for epochs in (1, 4):
        model = tiny_model()
        trainer = Trainer(
            model, LearnerConfig(algorithm="ppo", lr=1e-2, ppo_epochs=epochs), pad_id=PAD
        )
        start = p_good(model)  # after the Trainer set eval(): no dropout in either reading
        groups = rollout(model, 0, seed=3)
        # a batch with a reward spread (seed 5 drew no GOOD since aee2024: zero advantages)
        assert 0 < sum(t.reward for g in groups for t in g) < sum(len(g) for g in groups)
        trainer.step(groups)
        moved[epochs] = p_good(model) - start
    assert moved[1] > 0
    assert moved[4] > moved[1]


@pytest.mark.parametrize("algorithm", ["grpo", "rloo", "reinforce"])
def test_other_algorithms_make_one_pass(algorithm):
    model = tiny_model()
    trainer = Trainer(model, LearnerConfig(algorithm=algorithm, lr=1e-2, ppo_epochs=3), pad_id=PAD)
    metrics = trainer.step(rollout(model, 0))
    assert adam_steps(trainer) == 1 and "ppo_epochs_done" not in metrics


def test_ppo_epochs_must_be_positive():
    with pytest.raises(ConfigError, match="learner.ppo_epochs"):
        LearnerConfig(ppo_epochs=0)
