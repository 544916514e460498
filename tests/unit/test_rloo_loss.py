"""`learner.rloo_loss` picks rloo's loss: clip (PPO-clip against the behavior log-probs, as grpo
and ppo) or is (policy gradient x truncated importance weights). Hand-worked values, the zero
gradient that makes clip a trust region, and the Trainer reaching the chosen loss."""

import math

import pytest
import torch
from test_algorithm_table import off_policy
from test_trainer import PAD, rollout, tiny_model

from rewardloop.config import LearnerConfig
from rewardloop.errors import ConfigError
from rewardloop.learner.algorithms import ALGORITHM_TABLE, rloo_loss
from rewardloop.learner.trainer import Trainer


def _two_tokens():
    # One completion of two tokens, A = +1, ratios pi / pi_behavior = [1.5, 1.0].
    lp = torch.log(torch.tensor([[1.5, 1.0]])).requires_grad_()
    return lp, torch.zeros(1, 2), torch.ones(1, 2), torch.tensor([1.0])


def test_clip_hand_worked():
    # clip: min(rho, 1.2) * A = [1.2, 1.0] -> loss -(1.2 + 1.0) / 2 = -1.1. The first token is
    # past 1 + eps with A > 0: no gradient; the second gets d(-rho/2)/d lp = -rho/2 = -0.5.
    lp, behavior, mask, adv = _two_tokens()
    result = rloo_loss(lp, behavior, mask, adv, LearnerConfig(algorithm="rloo", rloo_loss="clip"))
    result.loss.backward()
    assert float(result.loss.detach()) == pytest.approx(-1.1)
    assert result.stats["clip_frac"] == 0.5
    assert lp.grad[0].tolist() == pytest.approx([0.0, -0.5])


def test_is_hand_worked():
    # is: w = min(rho, 2) = [1.5, 1.0], loss = -(1.5 ln 1.5 + 1.0 * 0) / 2 = -0.304099, and the
    # gradient -w / 2 = [-0.75, -0.5]: the token that already rose 50 % is pushed up hardest.
    lp, behavior, mask, adv = _two_tokens()
    result = rloo_loss(lp, behavior, mask, adv, LearnerConfig(algorithm="rloo", rloo_loss="is"))
    result.loss.backward()
    assert float(result.loss.detach()) == pytest.approx(-1.5 * math.log(1.5) / 2)
    assert result.stats["is_mean"] == pytest.approx(1.25)
    assert lp.grad[0].tolist() == pytest.approx([-0.75, -0.5])


def test_the_table_routes_rloo_through_the_key():
    assert ALGORITHM_TABLE["rloo"].loss is rloo_loss


def test_rloo_loss_reaches_the_trainer():
    # Every token's ratio is about e^0.3 = 1.35 (> 1.2): clip reports clipped tokens, is reports
    # importance weights of about 1.35 and no clip statistic at all.
    groups = off_policy(rollout(tiny_model(), 0, seed=2), 0.3)
    stats = {}
    for loss in ("clip", "is"):
        cfg = LearnerConfig(algorithm="rloo", lr=1e-2, rloo_loss=loss)
        stats[loss] = Trainer(tiny_model(), cfg, pad_id=PAD).step(groups)
    assert stats["clip"]["clip_frac"] > 0.0 and "is_mean" not in stats["clip"]
    assert stats["is"]["is_mean"] == pytest.approx(math.exp(0.3), rel=2e-2)
    assert "clip_frac" not in stats["is"]


def test_rloo_loss_is_validated_naming_the_key():
    with pytest.raises(ConfigError, match="learner.rloo_loss: use one of is, clip"):
        LearnerConfig(rloo_loss="ppo")


def test_clip_is_rloos_default():
    assert LearnerConfig().rloo_loss == "clip"
