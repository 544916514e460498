"""The algorithm table covers exactly the configured algorithms, and the knobs
`learner.clip_eps_high`, `learner.is_level` and `learner.kl_estimator: k2` reach the maths:
hand-worked values through the table's losses, and a Trainer built with the knob behaves
differently from the default."""

import math

import pytest
import torch
from test_trainer import PAD, rollout, tiny_model  # the same toy task (tests/unit)

from rewardloop.config import ALGORITHMS, LearnerConfig
from rewardloop.errors import ConfigError
from rewardloop.learner import losses
from rewardloop.learner.algorithms import (
    ALGORITHM_TABLE,
    LossResult,
    algorithm_for,
    clip_loss,
    weighted_pg_loss,
)
from rewardloop.learner.batching import collate, completion_logits, token_logprobs
from rewardloop.learner.trainer import Trainer

LN2 = math.log(2.0)


def test_the_table_has_exactly_the_configured_algorithms():
    assert set(ALGORITHM_TABLE) == set(ALGORITHMS)
    assert all(algo.name == name for name, algo in ALGORITHM_TABLE.items())
    cfg = LearnerConfig(ppo_epochs=3)
    assert {n: a.epochs(cfg) for n, a in ALGORITHM_TABLE.items()} == {
        "grpo": 1,
        "rloo": 1,
        "reinforce": 1,
        "ppo": 3,
    }
    with pytest.raises(ConfigError, match="learner.algorithm: use one of grpo"):
        algorithm_for("dpo")


def test_trainer_looks_the_algorithm_up_once():
    trainer = Trainer(tiny_model(), LearnerConfig(algorithm="rloo"), pad_id=PAD)
    assert trainer.algorithm is ALGORITHM_TABLE["rloo"]


def test_the_loss_is_a_named_result_not_a_metrics_entry():
    lp = torch.zeros(1, 2, requires_grad=True)
    result = clip_loss(lp, torch.zeros(1, 2), torch.ones(1, 2), torch.ones(1), LearnerConfig())
    assert isinstance(result, LossResult) and result.loss.requires_grad
    assert "_loss" not in result.stats and all(isinstance(v, float) for v in result.stats.values())


# -- clip_eps_high ---------------------------------------------------------------------------
def test_clip_eps_high_hand_worked():
    # One completion, A = +1, ratios pi/pi_behavior = [1.25, 1.5].
    # default (clip 1.2 on both sides): min(r, 1.2) = [1.2, 1.2] -> loss -1.2, both clipped.
    # clip_eps_high 0.28 (1.28):        min(r, 1.28) = [1.25, 1.28] -> loss -(2.53 / 2) = -1.265,
    #                                   only the second clipped.
    lp = torch.log(torch.tensor([[1.25, 1.5]]))
    args = (lp, torch.zeros(1, 2), torch.ones(1, 2), torch.tensor([1.0]))
    default = clip_loss(*args, LearnerConfig())
    high = clip_loss(*args, LearnerConfig(clip_eps_high=0.28))
    assert float(default.loss) == pytest.approx(-1.2)
    assert default.stats["clip_frac"] == 1.0
    assert float(high.loss) == pytest.approx(-1.265)
    assert high.stats["clip_frac"] == 0.5


def off_policy(groups, shift: float):
    """The same trajectories as if a policy that gave each token `shift` less log-prob made them."""
    for group in groups:
        for t in group:
            t.behavior_logprobs = t.behavior_logprobs - shift
    return groups


def test_clip_eps_high_reaches_the_trainer():
    # Every ratio is e^0.3 = 1.35: above 1.2 (clipped where A > 0), below 1.4 (never clipped).
    clip_frac = {}
    for high in (0.0, 0.4):
        model = tiny_model()
        trainer = Trainer(model, LearnerConfig(lr=1e-2, clip_eps_high=high), pad_id=PAD)
        clip_frac[high] = trainer.step(off_policy(rollout(model, 0, seed=2), 0.3))["clip_frac"]
    assert clip_frac[0.0] > 0.0
    assert clip_frac[0.4] == 0.0


# -- is_level --------------------------------------------------------------------------------
def test_is_level_hand_worked():
    # One completion of two tokens, A = 1, log pi = [ln .5, ln .5], log pi_behavior = [ln .25, 0]:
    # token ratios [2, 0.5]; the sequence's ratio 2 * 0.5 = 1 (cap 3 never bites).
    # token:    loss = -(2 ln .5 + 0.5 ln .5) / 2 = 1.25 ln 2 = 0.866434, is_mean 1.25
    # sequence: loss = -(ln .5 + ln .5) / 2      = ln 2        = 0.693147, is_mean 1.0
    lp = torch.log(torch.tensor([[0.5, 0.5]]))
    behavior = torch.log(torch.tensor([[0.25, 1.0]]))
    args = (lp, behavior, torch.ones(1, 2), torch.tensor([1.0]))  # mask, advantages
    token = weighted_pg_loss(*args, LearnerConfig(algorithm="rloo", is_cap=3.0))
    seq = weighted_pg_loss(*args, LearnerConfig(algorithm="rloo", is_cap=3.0, is_level="sequence"))
    assert float(token.loss) == pytest.approx(1.25 * LN2)
    assert token.stats["is_mean"] == pytest.approx(1.25)
    assert float(seq.loss) == pytest.approx(LN2)
    assert seq.stats["is_mean"] == pytest.approx(1.0)


def test_is_level_reaches_the_trainer():
    # Each token's ratio is about e^0.3 (1.35); a completion of L tokens has about e^(0.3 L),
    # capped at 2. Exactly: the learner's log-probs against the shifted behavior ones.
    model = tiny_model()
    groups = off_policy(rollout(model, 0, seed=4), 0.3)
    batch = collate(groups, PAD)
    with torch.no_grad():
        log_w = token_logprobs(completion_logits(model.eval(), batch, 1.0), batch)
    log_w = (log_w - batch.behavior_logprobs) * batch.mask
    token = float(log_w.exp().clamp(max=2.0)[batch.mask.bool()].mean())
    sequence = float(log_w.sum(1).exp().clamp(max=2.0).mean())
    stats = {}
    for level in ("token", "sequence"):
        cfg = LearnerConfig(algorithm="rloo", rloo_loss="is", lr=1e-2, is_level=level)
        stats[level] = Trainer(tiny_model(), cfg, pad_id=PAD).step(groups)["is_mean"]
    assert stats["token"] == pytest.approx(token, rel=1e-5)
    assert stats["token"] == pytest.approx(math.exp(0.3), rel=2e-2)
    assert stats["sequence"] == pytest.approx(sequence, rel=1e-5)
    assert stats["sequence"] > 1.5 > stats["token"]  # most completions have 2 or 3 tokens


# -- kl_estimator: k2 ------------------------------------------------------------------------
def test_k2_hand_worked():
    # log r = ref - lp = ln .25 - ln .5 = -ln 2:  k2 = (ln 2)^2 / 2 = 0.240227
    lp, ref = torch.log(torch.tensor([[0.5]])), torch.log(torch.tensor([[0.25]]))
    k2 = losses.kl_penalty(lp, ref, torch.ones(1, 1), "k2")
    assert float(k2) == pytest.approx(LN2**2 / 2) == pytest.approx(0.240227, abs=1e-6)


def test_kl_estimator_k2_reaches_the_trainer():
    """After a few steps the policy differs from the reference; the next step's kl_ref is the k2
    estimate over its batch, computed here independently from the two models."""
    reported = {}
    for estimator in ("k2", "k3"):
        model = tiny_model()
        cfg = LearnerConfig(lr=5e-2, kl_coef=0.1, kl_estimator=estimator)
        trainer = Trainer(model, cfg, pad_id=PAD)
        for seed in range(1, 4):  # move the policy away from the reference
            trainer.step(rollout(model, trainer.version, seed=seed))
        groups = rollout(model, trainer.version, seed=4)
        batch = collate(groups, PAD)
        with torch.no_grad():
            lp = token_logprobs(completion_logits(trainer.model, batch, 1.0), batch)
            ref = token_logprobs(completion_logits(trainer.reference, batch, 1.0), batch)
        expected = float(losses.kl_penalty(lp, ref, batch.mask, estimator))
        reported[estimator] = trainer.step(groups)["kl_ref"]
        assert reported[estimator] == pytest.approx(expected, rel=1e-4)
    assert reported["k2"] > 0 and reported["k2"] != pytest.approx(reported["k3"], rel=1e-3)


def test_new_knobs_are_validated_naming_the_key():
    with pytest.raises(ConfigError, match="learner.is_level: use one of token, sequence"):
        LearnerConfig(is_level="batch")
    with pytest.raises(ConfigError, match="learner.clip_eps_high"):
        LearnerConfig(clip_eps_high=1.5)
