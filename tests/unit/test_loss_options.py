"""The learner options issue 14 asked for, against hand-worked values: dual-clip, Dr. GRPO's
constant normaliser, GSPO's sequence ratio, the log-ratio bound, overlong (truncated) masking
and dynamic sampling; then each through the Trainer, where it must change (or not) a real step."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from rewardloop.config import LearnerConfig
from rewardloop.errors import ConfigError, InvalidInput
from rewardloop.learner.advantages import varied_groups
from rewardloop.learner.losses import (
    aggregate,
    kl_penalty,
    mask_truncated,
    policy_gradient_loss,
    ppo_clip_loss,
    truncated_completions,
)
from rewardloop.learner.trainer import Trainer
from rewardloop.trajectory import Trajectory

D = torch.float64


def ratios(*values: float) -> torch.Tensor:
    """log-probs whose ratio against old = 0 is exactly `values`, with a gradient."""
    return torch.tensor([list(values)], dtype=D).log().requires_grad_()


# ---------------------------------------------------------------- dual-clip


def test_dual_clip_hand_worked():
    # A = -1, rho = 4, 2, 0.5, eps 0.2, c = 3.
    # plain: min(-4, -1.2) = -4 (grad), min(-2, -1.2) = -2 (grad), min(-0.5, -0.8) = -0.8 (none)
    # dual:  max(-4, -3) = -3 (no grad), -2 stays, -0.8 stays.  loss = (3 + 2 + 0.8) / 3
    lp = ratios(4.0, 2.0, 0.5)
    old, adv, mask = torch.zeros(1, 3, dtype=D), torch.tensor([-1.0], dtype=D), torch.ones(1, 3)
    loss, stats = ppo_clip_loss(lp, old, adv, mask, dual_clip=3.0)
    assert loss.item() == pytest.approx(5.8 / 3)
    (grad,) = torch.autograd.grad(loss, lp)
    # d(-obj)/d lp = -A * rho = rho on the unclipped token only, / 3 tokens
    assert torch.allclose(grad, torch.tensor([[0.0, 2 / 3, 0.0]], dtype=D))
    assert stats["dual_clip_frac"] == pytest.approx(1 / 3)
    assert stats["clip_frac"] == pytest.approx(2 / 3)
    plain, _ = ppo_clip_loss(lp, old, adv, mask)
    assert plain.item() == pytest.approx(6.8 / 3)
    assert torch.allclose(
        torch.autograd.grad(plain, lp)[0], torch.tensor([[4 / 3, 2 / 3, 0.0]], dtype=D)
    )


def test_dual_clip_leaves_positive_advantages_alone():
    lp = ratios(4.0, 1.1)
    args = (torch.zeros(1, 2, dtype=D), torch.tensor([1.0], dtype=D), torch.ones(1, 2))
    with_dual, _ = ppo_clip_loss(lp, *args, dual_clip=3.0)
    assert with_dual.item() == pytest.approx(-(1.2 + 1.1) / 2)
    assert with_dual.item() == ppo_clip_loss(lp, *args)[0].item()
    with pytest.raises(InvalidInput):
        ppo_clip_loss(lp, *args, dual_clip=0.5)


# ---------------------------------------------------------------- Dr. GRPO's constant normaliser


def test_constant_aggregation_hand_worked():
    v = torch.tensor([[1.0, 2.0, 3.0], [10.0, 0.0, 0.0], [5.0, 5.0, 5.0]])
    m = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    # real sum 16; B = 3 rows; T = 3 (padded width) or norm_tokens = 4
    assert aggregate(v, m, "constant").item() == pytest.approx(16 / 9)
    assert aggregate(v, m, "constant", norm_tokens=4).item() == pytest.approx(16 / 12)
    with pytest.raises(InvalidInput):
        aggregate(v, m, "constant", norm_tokens=-1)


def test_constant_aggregation_gives_every_token_the_same_gradient_whatever_its_length():
    # A = 1, rows of 3 and 1 real tokens, norm_tokens 4: d loss / d lp = -1 / (2 x 4) everywhere
    lp = torch.zeros(2, 3, dtype=D, requires_grad=True)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    adv = torch.ones(2, dtype=D)
    expected = {
        "constant": [[-0.125] * 3, [-0.125, 0, 0]],
        "token": [[-0.25] * 3, [-0.25, 0, 0]],
        "sequence": [[-1 / 6] * 3, [-0.5, 0, 0]],
    }
    for mode, grad in expected.items():
        loss, _ = policy_gradient_loss(lp, adv, mask, aggregation=mode, norm_tokens=4)
        got = torch.autograd.grad(loss, lp)[0]
        assert torch.allclose(got, torch.tensor(grad, dtype=D)), mode


# ---------------------------------------------------------------- GSPO's sequence ratio


def test_sequence_level_ratio_hand_worked():
    # row 0: ratios 2, 0.5, 4 -> exp(mean log) = 4 ** (1/3) = 1.587 > 1.2, A = 1: clipped, no grad
    # row 1: ratios 1.1, 1.0 -> sqrt(1.1) = 1.0488, unclipped; each of its tokens carries it
    # token aggregation over 5 real tokens: loss = -(3 x 1.2 + 2 x sqrt(1.1)) / 5
    lp = torch.tensor([[2.0, 0.5, 4.0], [1.1, 1.0, 1.0]], dtype=D).log().requires_grad_()
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    adv = torch.ones(2, dtype=D)
    loss, stats = ppo_clip_loss(lp, torch.zeros(2, 3, dtype=D), adv, mask, level="sequence")
    s = math.sqrt(1.1)
    assert loss.item() == pytest.approx(-(3 * 1.2 + 2 * s) / 5)
    # d loss / d lp_1t = -(1/5) x 2 tokens x d s / d lp_1t = -(1/5) x 2 x s / 2 = -s / 5
    (grad,) = torch.autograd.grad(loss, lp)
    assert torch.allclose(grad, torch.tensor([[0, 0, 0], [-s / 5, -s / 5, 0]], dtype=D))
    assert stats["clip_frac"] == pytest.approx(3 / 5)
    assert stats["ratio_max"] == pytest.approx(4 ** (1 / 3))
    token, _ = ppo_clip_loss(lp, torch.zeros(2, 3, dtype=D), adv, mask)  # per token differs
    assert token.item() == pytest.approx(-(1.2 + 0.5 + 1.2 + 1.1 + 1.0) / 5)


# ---------------------------------------------------------------- the log-ratio bound


def test_log_ratio_bound_keeps_an_extreme_token_from_making_nan():
    # behavior log-prob -800 for a token the learner now gives p = 1: rho = exp(800) = inf.
    lp = torch.zeros(1, 2, dtype=D, requires_grad=True)
    old = torch.tensor([[-800.0, 0.0]], dtype=D)
    adv, mask = torch.tensor([1.0], dtype=D), torch.ones(1, 2)
    unbounded, _ = ppo_clip_loss(lp, old, adv, mask, log_ratio_bound=None)
    assert unbounded.item() == pytest.approx(-(1.2 + 1.0) / 2)  # the value looks fine ...
    assert torch.isnan(torch.autograd.grad(unbounded, lp)[0]).any()  # ... 0 * inf in backward
    loss, stats = ppo_clip_loss(lp, old, adv, mask, log_ratio_bound=20.0)
    assert loss.item() == pytest.approx(-(1.2 + 1.0) / 2)
    grad = torch.autograd.grad(loss, lp)[0]
    assert torch.allclose(grad, torch.tensor([[0.0, -0.5]], dtype=D))  # clipped token: no grad
    assert stats["ratio_max"] == pytest.approx(math.exp(20))
    # negative advantage: unbounded -> -inf objective; bounded -> finite, and dual-clip caps it
    neg = torch.tensor([-1.0], dtype=D)
    assert math.isinf(ppo_clip_loss(lp, old, neg, mask, log_ratio_bound=None)[0].item())
    bounded = ppo_clip_loss(lp, old, neg, mask)[0].item()
    assert bounded == pytest.approx((math.exp(20) + 1.0) / 2)
    assert ppo_clip_loss(lp, old, neg, mask, dual_clip=3.0)[0].item() == pytest.approx(2.0)


def test_log_ratio_bound_on_the_kl_estimators():
    # log r = ref - lp = 800: k3 = e^800 - 801 = inf unbounded; bounded at 20: e^20 - 21
    lp = torch.full((1, 1), -800.0, dtype=D)
    ref, mask = torch.zeros(1, 1, dtype=D), torch.ones(1, 1)
    assert math.isinf(kl_penalty(lp, ref, mask, "k3", log_ratio_bound=None).item())
    assert kl_penalty(lp, ref, mask, "k3").item() == pytest.approx(math.exp(20) - 21)
    assert kl_penalty(lp, ref, mask, "k2").item() == pytest.approx(0.5 * 20**2)
    assert kl_penalty(lp, ref, mask, "k1").item() == pytest.approx(-20.0)
    with pytest.raises(InvalidInput):
        kl_penalty(lp, ref, mask, "k3", log_ratio_bound=0.0)


# ---------------------------------------------------------------- overlong masking, dynamic sampling

EOS_ID = 2


def test_truncated_completions_and_their_mask():
    ids = torch.tensor([[5, 2, 0], [5, 6, 7], [2, 0, 0], [0, 0, 0], [7, 0, 0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0], [0, 0, 0], [1, 0, 0]], dtype=torch.float)
    # ends in eos: rows 0, 2; cut off: rows 1 and 4 (whose last real token 7 is not eos)
    assert truncated_completions(ids, mask, EOS_ID).tolist() == [False, True, False, False, True]
    masked, n = mask_truncated(mask, ids, EOS_ID)
    assert n == 2
    assert masked.tolist() == [[1, 1, 0], [0, 0, 0], [1, 0, 0], [0, 0, 0], [0, 0, 0]]


def test_varied_groups_hand_worked():
    assert varied_groups([[1.0, 1.0, 1.0], [0.0, 1.0], [0.5], [], [0.2, 0.2, 0.3]]) == [1, 4]


def test_new_keys_are_validated_naming_the_key():
    for key, value in [("dual_clip", 1.0), ("log_ratio_bound", 0.0), ("norm_tokens", -1)]:
        with pytest.raises(ConfigError, match=f"learner.{key}"):
            LearnerConfig(**{key: value})
    with pytest.raises(ConfigError, match="learner.aggregation"):
        LearnerConfig(aggregation="batch")
    LearnerConfig(aggregation="constant", dual_clip=3.0, is_level="sequence")


# ---------------------------------------------------------------- through the Trainer

PROMPT = [3, 4, 5]


def tiny_model():
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=16, vocab_size=12)
    return GPT2LMHeadModel(cfg)


def group(name: str, completions: list[list[int]], rewards: list[float]) -> list[Trajectory]:
    return [
        Trajectory(
            id=f"{name}-{i}",
            group_id=name,
            prompt_ids=PROMPT,
            completion_ids=c,
            behavior_logprobs=[-2.0] * len(c),
            reward=r,
            policy_version=0,
            group_size=len(completions),
        )
        for i, (c, r) in enumerate(zip(completions, rewards, strict=True))
    ]


def trained(cfg: LearnerConfig, groups, max_new_tokens: int = 0):
    torch.manual_seed(1)
    trainer = Trainer(tiny_model(), cfg, pad_id=0, eos_id=EOS_ID, max_new_tokens=max_new_tokens)
    metrics = trainer.step(groups)
    return trainer, metrics, {k: v.clone() for k, v in trainer.model.state_dict().items()}


def same_params(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_filter_constant_groups_trains_only_the_varied_groups_and_skips_an_all_flat_step():
    varied = group("v", [[7, 2], [8, 2]], [1.0, 0.0])
    flat = group("f", [[9, 9, 9, 2], [6, 2]], [0.5, 0.5])
    cfg = LearnerConfig(filter_constant_groups=True, lr=1e-2)
    _, m, filtered = trained(cfg, [varied, flat])
    _, _, alone = trained(cfg, [varied])
    assert m["groups_filtered"] == 1 and m["skipped"] == 0
    assert same_params(filtered, alone)
    _, _, diluted = trained(LearnerConfig(lr=1e-2), [varied, flat])
    assert not same_params(diluted, alone)  # without the filter the flat group changes the step
    trainer, m, params = trained(cfg, [flat])
    assert m["skipped"] == 1 and trainer.version == 0 and trainer.steps_skipped == 1
    assert "filter_constant_groups" in trainer.last_skip_reason
    assert same_params(params, tiny_model().state_dict())


def test_mask_truncated_gives_cut_off_completions_no_gradient():
    cut = group("c", [[7, 8, 9], [8, 8, 8]], [1.0, 0.0])  # neither ends in eos
    before = tiny_model().state_dict()
    trainer, m, params = trained(LearnerConfig(mask_truncated=True, lr=1e-2), [cut])
    assert m["truncated_masked"] == 2 and same_params(params, before)
    _, _, unmasked = trained(LearnerConfig(lr=1e-2), [cut])
    assert not same_params(unmasked, before)
    with pytest.raises(ConfigError, match="mask_truncated"):
        Trainer(tiny_model(), LearnerConfig(mask_truncated=True), pad_id=0)


def test_constant_aggregation_uses_max_new_tokens_and_micro_batches_agree():
    groups = [
        group("a", [[7, 2], [8, 8, 8, 2]], [1.0, 0.0]),
        group("b", [[9, 2], [6, 2]], [0.0, 1.0]),
    ]
    cfg = LearnerConfig(aggregation="constant", scale_std=False, lr=1e-2)
    t, m, full = trained(cfg, groups, max_new_tokens=8)
    assert t.cfg.norm_tokens == 8
    _, m_micro, micro = trained(
        LearnerConfig(aggregation="constant", scale_std=False, lr=1e-2, micro_batch_size=1),
        groups,
        max_new_tokens=8,
    )
    assert m["loss"] == pytest.approx(m_micro["loss"], rel=1e-5)
    for k in full:
        torch.testing.assert_close(full[k], micro[k], atol=1e-6, rtol=1e-5)
    _, _, other = trained(cfg, groups, max_new_tokens=32)  # a different budget, a smaller step
    assert not same_params(full, other)
