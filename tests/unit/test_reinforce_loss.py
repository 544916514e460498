"""reinforce's two knobs, hand-worked through the table's row: `learner.reinforce_baseline`
(running: a running mean over all rewards, the default; group: each reward against its prompt
group's mean, scaled by the batch's std, REINFORCE++-baseline) and `learner.reinforce_loss`
(clip: PPO-clip against the behavior log-probs, the default; is: truncated importance weights);
both reach the trainer, and grpo ignores them."""

import math

import pytest
import torch
from test_trainer import PAD, rollout, tiny_model  # the same toy task (tests/unit)

from rewardloop.config import LearnerConfig
from rewardloop.errors import ConfigError
from rewardloop.learner.advantages import RunningMean
from rewardloop.learner.algorithms import ALGORITHM_TABLE
from rewardloop.learner.trainer import Trainer

REINFORCE = ALGORITHM_TABLE["reinforce"]
LOSS = REINFORCE.loss
REWARDS = torch.tensor([1.0, 0.0, 2.0, 2.0, 3.0, 0.0, 0.0])
GROUPS = torch.tensor([5, 5, 9, 9, 2, 2, 2])  # arbitrary group ids: {1, 0}, {2, 2}, {3, 0, 0}


def test_group_baseline_hand_worked():
    # r - mean_g = [0.5, -0.5, 0, 0, 2, -1, -1]; their population std over the batch is
    # sqrt((0.25 + 0.25 + 4 + 1 + 1) / 7) = sqrt(6.5 / 7) = 0.963624, so
    # A = [0.518875, -0.518875, 0, 0, 2.075498, -1.037749, -1.037749]: the group of equal
    # rewards gets 0 exactly, and the third group's 0s are below *its* mean, not the batch's.
    baseline = RunningMean()
    cfg = LearnerConfig(algorithm="reinforce", reinforce_baseline="group")
    a = REINFORCE.advantages(REWARDS, GROUPS, cfg, baseline)
    expected = [0.518875, -0.518875, 0.0, 0.0, 2.075498, -1.037749, -1.037749]
    assert a.tolist() == pytest.approx(expected, abs=1e-6)
    assert a[2] == 0.0 and a[3] == 0.0
    assert baseline.value is None  # the running mean is not used
    # a batch of equal groups has no spread to scale: 0, not a round-off residue over eps
    flat = REINFORCE.advantages(torch.full((4,), 0.1), torch.tensor([0, 0, 1, 1]), cfg, baseline)
    assert flat.tolist() == [0.0] * 4


def test_running_baseline_hand_worked():
    # batch 1: b starts at its mean 8 / 7, A = r - 8/7; then b = 8/7.
    # batch 2 = [2, 0]: A = r - 8/7 = [6/7, -8/7]; then b = 0.9 * 8/7 + 0.1 * 1 = 1.128571.
    baseline = RunningMean()
    cfg = LearnerConfig(algorithm="reinforce", reinforce_baseline="running")
    a = REINFORCE.advantages(REWARDS, GROUPS, cfg, baseline)
    assert a.tolist() == pytest.approx((REWARDS - 8 / 7).tolist())
    a2 = REINFORCE.advantages(torch.tensor([2.0, 0.0]), torch.tensor([0, 0]), cfg, baseline)
    assert a2.tolist() == pytest.approx([6 / 7, -8 / 7])
    assert baseline.value == pytest.approx(1.128571, abs=1e-6)


def run(ratios: list[float], advantage: float, reinforce_loss: str):
    """One completion whose tokens have pi / pi_behavior = `ratios`: (loss, d loss / d log pi)."""
    lp = torch.log(torch.tensor([ratios])).requires_grad_(True)
    cfg = LearnerConfig(algorithm="reinforce", reinforce_loss=reinforce_loss)
    result = LOSS(
        lp, torch.zeros(1, len(ratios)), torch.ones(1, len(ratios)), torch.tensor([advantage]), cfg
    )
    result.loss.backward()
    return result, lp.grad[0].tolist()


def test_clip_hand_worked_positive_advantage():
    # A = +1, ratios [1.25, 1.5]: both above 1 + 0.2, so both clipped at 1.2 with no gradient:
    # loss = -(1.2 + 1.2) / 2 = -1.2.
    result, grad = run([1.25, 1.5], 1.0, "clip")
    assert float(result.loss) == pytest.approx(-1.2)
    assert result.stats["clip_frac"] == 1.0
    assert grad == [0.0, 0.0]


def test_clip_hand_worked_negative_advantage():
    # A = -1, ratios [0.5, 1.0]: the first token already fell below 1 - 0.2, so it is clipped
    # (objective -0.8, no gradient: it is pushed down no further); the second is inside:
    # objective -1.0, d/d log pi of -(-ratio) / 2 = ratio / 2 = 0.5. loss = (0.8 + 1.0) / 2 = 0.9.
    result, grad = run([0.5, 1.0], -1.0, "clip")
    assert float(result.loss) == pytest.approx(0.9)
    assert result.stats["clip_frac"] == 0.5
    assert grad == pytest.approx([0.0, 0.5])


def test_is_hand_worked():
    # The same two batches with truncated importance weights w = min(ratio, is_cap = 2):
    # A = +1: loss = -(1.25 ln 1.25 + 1.5 ln 1.5) / 2 = -0.443564, grad -w / 2 = [-0.625, -0.75];
    # A = -1: loss = (0.5 ln 0.5 + 1.0 ln 1.0) / 2 = -0.173287, grad w / 2 = [0.25, 0.5]: the
    # token that already fell is still pushed down.
    up, grad_up = run([1.25, 1.5], 1.0, "is")
    assert float(up.loss) == pytest.approx(-(1.25 * math.log(1.25) + 1.5 * math.log(1.5)) / 2)
    assert float(up.loss) == pytest.approx(-0.443564, abs=1e-6)
    assert grad_up == pytest.approx([-0.625, -0.75])
    down, grad_down = run([0.5, 1.0], -1.0, "is")
    assert float(down.loss) == pytest.approx(0.5 * math.log(0.5) / 2)
    assert grad_down == pytest.approx([0.25, 0.5])
    assert "clip_frac" not in up.stats and up.stats["is_mean"] == pytest.approx(1.375)


def test_reinforce_defaults():
    cfg = LearnerConfig()
    assert (cfg.reinforce_baseline, cfg.reinforce_loss) == ("running", "clip")


def off_policy(groups, shift: float):
    """The same trajectories as if a policy that gave each token `shift` less log-prob made them."""
    for group in groups:
        for t in group:
            t.behavior_logprobs = t.behavior_logprobs - shift
    return groups


def test_the_knobs_reach_the_trainer():
    # Every token's ratio is about e^0.3 = 1.35 > 1.2: clipped wherever A > 0.
    metrics, baselines = {}, {}
    for baseline, loss in (("group", "clip"), ("running", "is")):
        model = tiny_model()
        cfg = LearnerConfig(
            algorithm="reinforce", lr=1e-2, reinforce_baseline=baseline, reinforce_loss=loss
        )
        trainer = Trainer(model, cfg, pad_id=PAD)
        trainer.step(rollout(model, 0, seed=1))
        metrics[loss] = trainer.step(off_policy(rollout(model, 1, seed=2), 0.3))
        baselines[baseline] = trainer.baseline.value
    assert metrics["clip"]["clip_frac"] > 0.0 and "is_mean" not in metrics["clip"]
    assert metrics["is"]["is_mean"] > 1.0 and "clip_frac" not in metrics["is"]
    assert baselines["group"] is None and baselines["running"] is not None


def test_grpo_ignores_the_reinforce_knobs():
    params = {}
    for baseline, loss in (("group", "clip"), ("running", "is")):
        model = tiny_model()
        cfg = LearnerConfig(lr=1e-2, reinforce_baseline=baseline, reinforce_loss=loss)
        trainer = Trainer(model, cfg, pad_id=PAD)
        for seed in range(2):
            trainer.step(rollout(model, trainer.version, seed=seed))
        params[loss] = [p.detach().clone() for p in model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(params["clip"], params["is"], strict=True))


def test_reinforce_knobs_are_validated_naming_the_key():
    with pytest.raises(ConfigError, match="learner.reinforce_loss: use one of is, clip"):
        LearnerConfig(reinforce_loss="ppo")
    with pytest.raises(ConfigError, match="learner.reinforce_baseline: use one of running, group"):
        LearnerConfig(reinforce_baseline="critic")
