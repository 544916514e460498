"""Policy losses: hand-worked values, a per-token loop reference (values and autograd gradients),
the clip region's zero gradient, aggregation modes, and padding that must never produce NaN."""

from __future__ import annotations

import math

import pytest
import torch

from rewardloop.errors import InvalidInput
from rewardloop.learner.losses import (
    aggregate,
    behavior_mismatch,
    entropy_from_logits,
    kl_penalty,
    policy_gradient_loss,
    ppo_clip_loss,
    truncated_importance_weights,
)

D = torch.float64


def close(t: torch.Tensor, expected: list, atol: float = 1e-9) -> bool:
    return torch.allclose(t.detach().to(D), torch.tensor(expected, dtype=D), atol=atol)


def val(t: torch.Tensor) -> float:
    return t.detach().item()


# ---------------------------------------------------------------- loop references
# Scalar-by-scalar, with Python `if`s in place of clamp/minimum/where, so that autograd through
# them is an independent computation of the gradient.


def aggregate_loop(per_token: list[list[torch.Tensor]], mask: list[list[int]], mode: str):
    if mode == "token":
        total, count = torch.zeros((), dtype=D), 0
        for row, row_m in zip(per_token, mask, strict=True):
            for v, m in zip(row, row_m, strict=True):
                if m:
                    total, count = total + v, count + 1
        return total / count if count else total
    row_means = []
    for row, row_m in zip(per_token, mask, strict=True):
        real = [v for v, m in zip(row, row_m, strict=True) if m]
        if real:
            row_means.append(sum(real) / len(real))
    return sum(row_means) / len(row_means) if row_means else torch.zeros((), dtype=D)


def ppo_loop(lp, old, adv, mask, eps, weights, mode):
    per_token = []
    for b in range(lp.shape[0]):
        row = []
        for t in range(lp.shape[1]):
            a = float(adv[b] if adv.dim() == 1 else adv[b, t])
            w = 1.0 if weights is None else float(weights[b, t])
            ratio = torch.exp(lp[b, t] - float(old[b, t]))
            r = val(ratio)
            if r > 1 + eps:
                clipped = torch.tensor(1 + eps, dtype=D)  # constant: no gradient
            elif r < 1 - eps:
                clipped = torch.tensor(1 - eps, dtype=D)
            else:
                clipped = ratio
            obj = ratio * a if r * a <= val(clipped) * a else clipped * a
            row.append(w * obj)
        per_token.append(row)
    return -aggregate_loop(per_token, mask.int().tolist(), mode)


def random_case(seed: int, b: int = 4, t: int = 6):
    gen = torch.Generator().manual_seed(seed)
    lp = -torch.rand(b, t, generator=gen, dtype=D) * 3
    old = lp + 0.4 * torch.randn(b, t, generator=gen, dtype=D)  # ratios spread past 1 +- 0.2
    mask = torch.zeros(b, t, dtype=torch.bool)
    lengths = [t, 1, 0, 4][:b]  # uneven, one empty row
    for i, n in enumerate(lengths):
        mask[i, :n] = True
    adv_seq = torch.randn(b, generator=gen, dtype=D)
    adv_tok = torch.randn(b, t, generator=gen, dtype=D)
    weights = torch.rand(b, t, generator=gen, dtype=D) * 2
    return lp, old, mask, adv_seq, adv_tok, weights


# ---------------------------------------------------------------- aggregate


def test_aggregate_hand_worked():
    v = torch.tensor([[1.0, 2.0, 3.0], [10.0, 0.0, 0.0], [5.0, 5.0, 5.0]])
    m = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 0, 0]])  # row 2 is empty
    # token: (1 + 2 + 3 + 10) / 4 = 4;  sequence: mean(2, 10) = 6 (the empty row is left out)
    assert val(aggregate(v, m, "token")) == 4.0
    assert val(aggregate(v, m, "sequence")) == 6.0


def test_aggregate_modes_agree_on_equal_lengths_and_differ_otherwise():
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(3, 5, generator=gen)
    equal = torch.tensor([[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [1, 0, 1, 0, 1]])
    assert torch.allclose(aggregate(v, equal, "token"), aggregate(v, equal, "sequence"))
    uneven = torch.tensor([[1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0]])
    assert not torch.allclose(aggregate(v, uneven, "token"), aggregate(v, uneven, "sequence"))


def test_aggregate_no_real_token_is_zero_with_zero_grad():
    v = torch.full((2, 3), float("nan"), requires_grad=True)  # padding may hold anything
    for mode in ("token", "sequence"):
        out = aggregate(v, torch.zeros(2, 3), mode)
        out.backward()
        assert val(out) == 0.0 and torch.equal(v.grad, torch.zeros(2, 3))
        v.grad = None


def test_aggregate_rejects_unknown_mode_and_bad_shape():
    with pytest.raises(InvalidInput) as e:
        aggregate(torch.zeros(2, 2), torch.ones(2, 2), "mean")
    assert e.value.field == "aggregation"
    with pytest.raises(InvalidInput):
        aggregate(torch.zeros(2, 3), torch.ones(2, 2), "token")


# ---------------------------------------------------------------- PPO-clip


def test_ppo_clip_hand_worked_positive_advantage():
    # old = 0, ratios [1.5, 0.5, 1.1], A = +1, eps 0.2:
    #   t0 min(1.5, 1.2) = 1.2 (clipped above, A > 0: zero gradient)
    #   t1 min(0.5, 0.8) = 0.5 (unclipped: gradient A * ratio = 0.5)
    #   t2 min(1.1, 1.1) = 1.1 (inside the band)
    # loss = -(1.2 + 0.5 + 1.1) / 3 = -0.93333
    lp = torch.tensor([[1.5, 0.5, 1.1]], dtype=D).log().requires_grad_()
    loss, stats = ppo_clip_loss(
        lp, torch.zeros(1, 3, dtype=D), torch.tensor([1.0]), torch.ones(1, 3)
    )
    assert val(loss) == pytest.approx(-2.8 / 3)
    loss.backward()
    # d loss / d lp_t = -(1/3) * A * ratio_t where unclipped, 0 where clipped
    assert close(lp.grad, [[0.0, -0.5 / 3, -1.1 / 3]])
    assert stats["clip_frac"] == pytest.approx(1 / 3)
    assert stats["ratio_mean"] == pytest.approx(3.1 / 3)
    assert stats["ratio_max"] == pytest.approx(1.5)
    # k3: (r - 1) - ln r = 0.5 - 0.405465, -0.5 + 0.693147, 0.1 - 0.095310 -> mean 0.097457
    assert stats["approx_kl"] == pytest.approx(0.097457, abs=1e-6)


def test_ppo_clip_hand_worked_negative_advantage():
    # A = -1: t0 min(-1.5, -1.2) = -1.5 (unclipped, gradient -1.5), t1 min(-0.5, -0.8) = -0.8
    # (clipped below with A < 0: zero gradient), t2 -1.1.  loss = (1.5 + 0.8 + 1.1) / 3
    lp = torch.tensor([[1.5, 0.5, 1.1]], dtype=D).log().requires_grad_()
    loss, stats = ppo_clip_loss(
        lp, torch.zeros(1, 3, dtype=D), torch.tensor([-1.0]), torch.ones(1, 3)
    )
    assert val(loss) == pytest.approx(3.4 / 3)
    loss.backward()
    assert close(lp.grad, [[1.5 / 3, 0.0, 1.1 / 3]])
    assert stats["clip_frac"] == pytest.approx(1 / 3)


def test_ppo_clip_higher_moves_only_the_upper_bound():
    # ratio 1.5 with A = 1: eps_high 0.6 leaves it unclipped -> objective 1.5, gradient flows
    lp = torch.tensor([[1.5, 0.5]], dtype=D).log().requires_grad_()
    old = torch.zeros(1, 2, dtype=D)
    loss, stats = ppo_clip_loss(lp, old, torch.tensor([1.0]), torch.ones(1, 2), clip_eps_high=0.6)
    # t1 still clipped below at 0.8 but A > 0 takes min(0.5, 0.8) = 0.5: loss = -(1.5 + 0.5) / 2
    assert val(loss) == pytest.approx(-1.0)
    assert stats["clip_frac"] == 0.0


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("mode", ["token", "sequence"])
def test_ppo_clip_matches_loop_values_and_gradients(seed, mode):
    lp, old, mask, adv_seq, adv_tok, weights = random_case(seed)
    for adv in (adv_seq, adv_tok):
        for w in (None, weights):
            x = lp.clone().requires_grad_()
            loss, _ = ppo_clip_loss(x, old, adv, mask, 0.2, w, mode)
            (grad,) = torch.autograd.grad(loss, x)
            y = lp.clone().requires_grad_()
            ref = ppo_loop(y, old, adv, mask, 0.2, w, mode)
            (ref_grad,) = torch.autograd.grad(ref, y)
            assert val(loss) == pytest.approx(val(ref), abs=1e-12)
            assert torch.allclose(grad, ref_grad, atol=1e-12)
            assert (grad[~mask] == 0).all()


def test_ppo_clip_on_policy_gradient_equals_policy_gradient():
    # At ratio 1 (logprobs == old), grad of min(rho A, clip(rho) A) is A * grad log pi: PG's.
    lp, _, mask, adv, _, _ = random_case(7)
    x1, x2 = lp.clone().requires_grad_(), lp.clone().requires_grad_()
    ppo, stats = ppo_clip_loss(x1, lp, adv, mask)
    pg, _ = policy_gradient_loss(x2, adv, mask)
    g1, g2 = torch.autograd.grad(ppo, x1)[0], torch.autograd.grad(pg, x2)[0]
    assert torch.allclose(g1, g2)
    assert stats["clip_frac"] == 0.0 and stats["approx_kl"] == 0.0 and stats["ratio_max"] == 1.0


def test_ppo_clip_padding_with_inf_and_nan_and_empty_rows_stays_finite():
    lp = torch.tensor([[-1.0, float("-inf")], [float("nan"), float("-inf")]], requires_grad=True)
    old = torch.tensor([[-1.2, -5.0], [float("inf"), 0.0]])
    mask = torch.tensor([[1, 0], [0, 0]])
    for mode in ("token", "sequence"):
        loss, stats = ppo_clip_loss(lp, old, torch.tensor([1.0, 1.0]), mask, aggregation=mode)
        (grad,) = torch.autograd.grad(loss, lp)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()
        assert all(math.isfinite(v) for v in stats.values())
        assert grad[0, 1] == 0 and (grad[1] == 0).all()
    loss, stats = ppo_clip_loss(lp, old, torch.ones(2), torch.zeros(2, 2))
    assert val(loss) == 0.0 and all(math.isfinite(v) for v in stats.values())


def test_ppo_clip_aggregation_modes_differ_only_with_uneven_lengths():
    lp, old, _, adv, _, _ = random_case(3)
    even = torch.ones_like(lp, dtype=torch.bool)
    a, _ = ppo_clip_loss(lp, old, adv, even, aggregation="token")
    b, _ = ppo_clip_loss(lp, old, adv, even, aggregation="sequence")
    assert torch.allclose(a, b)
    uneven = even.clone()
    uneven[1, 1:] = False
    a, _ = ppo_clip_loss(lp, old, adv, uneven, aggregation="token")
    b, _ = ppo_clip_loss(lp, old, adv, uneven, aggregation="sequence")
    assert not torch.allclose(a, b)


# ---------------------------------------------------------------- REINFORCE


def test_policy_gradient_hand_worked():
    # A = [2, -1] per row; real tokens lp = -1, -2 (row 0) and -3 (row 1):
    # token mean of A * lp = (2*-1 + 2*-2 + -1*-3) / 3 = -1 -> loss = 1;  grad = -A / 3
    lp = torch.tensor([[-1.0, -2.0], [-3.0, float("-inf")]], requires_grad=True)
    mask = torch.tensor([[1, 1], [1, 0]])
    loss, stats = policy_gradient_loss(lp, torch.tensor([2.0, -1.0]), mask)
    assert val(loss) == pytest.approx(1.0)
    loss.backward()
    assert close(lp.grad, [[-2 / 3, -2 / 3], [1 / 3, 0.0]])
    assert stats["logprob_mean"] == pytest.approx(-2.0)
    assert stats["advantage_mean"] == pytest.approx(1.0)  # (2 + 2 - 1) / 3
    # sequence mode: mean(2 * -1.5, -1 * -3) = mean(-3, 3) = 0
    loss, _ = policy_gradient_loss(lp, torch.tensor([2.0, -1.0]), mask, aggregation="sequence")
    assert val(loss) == pytest.approx(0.0)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("mode", ["token", "sequence"])
def test_policy_gradient_matches_loop(seed, mode):
    lp, _, mask, _, adv, weights = random_case(seed)
    x, y = lp.clone().requires_grad_(), lp.clone().requires_grad_()
    loss, _ = policy_gradient_loss(x, adv, mask, weights, mode)
    rows = [[weights[b, t] * adv[b, t] * y[b, t] for t in range(6)] for b in range(4)]
    ref = -aggregate_loop(rows, mask.int().tolist(), mode)
    assert val(loss) == pytest.approx(val(ref))
    assert torch.allclose(torch.autograd.grad(loss, x)[0], torch.autograd.grad(ref, y)[0])


# ---------------------------------------------------------------- truncated IS


def test_truncated_importance_weights_hand_worked():
    # log ratios ln 0.5, ln 3, ln 1 and a padding token; cap 2
    behavior = torch.zeros(2, 4, dtype=D)
    target = torch.tensor([[0.5, 3.0, 1.0, 1e30], [4.0, 1.0, 1.0, 1.0]], dtype=D).log()
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    w, stats = truncated_importance_weights(target, behavior, mask, cap=2.0)
    # token level: min([0.5, 3, 1], 2) = [0.5, 2, 1]; row 1: [min(4, 2), 1]; padding -> 0
    assert close(w, [[0.5, 2, 1, 0], [2, 1, 0, 0]])
    assert stats["is_mean"] == pytest.approx((0.5 + 2 + 1 + 2 + 1) / 5)
    assert stats["is_truncated_frac"] == pytest.approx(2 / 5)
    # sequence level: row 0 product 0.5 * 3 * 1 = 1.5 (< cap), row 1 product 4 -> 2
    w, stats = truncated_importance_weights(target, behavior, mask, cap=2.0, level="sequence")
    assert close(w, [[1.5, 1.5, 1.5, 0], [2, 2, 0, 0]])
    assert stats["is_mean"] == pytest.approx(1.75)
    assert stats["is_truncated_frac"] == pytest.approx(0.5)


def test_truncated_importance_weights_are_detached_and_never_overflow():
    target = torch.tensor([[800.0, 0.0], [0.0, 0.0]], requires_grad=True)  # exp(800) = inf
    w, _ = truncated_importance_weights(target, torch.zeros(2, 2), torch.ones(2, 2), cap=3.0)
    assert not w.requires_grad
    assert close(w, [[3.0, 1.0], [1.0, 1.0]])
    w, stats = truncated_importance_weights(
        target, torch.zeros(2, 2), torch.tensor([[1, 1], [0, 0]]), cap=3.0, level="sequence"
    )
    assert close(w, [[3.0, 3.0], [0.0, 0.0]])  # empty row: weight 0, no NaN
    assert stats == pytest.approx({"is_mean": 3.0, "is_truncated_frac": 1.0})
    with pytest.raises(InvalidInput):
        truncated_importance_weights(target, target, torch.ones(2, 2), cap=0.0)
    with pytest.raises(InvalidInput):
        truncated_importance_weights(target, target, torch.ones(2, 2), cap=2.0, level="batch")


def test_truncated_weights_plug_into_ppo_like_the_loop():
    lp, old, mask, adv, _, _ = random_case(5)
    behavior = old - 0.3
    w, _ = truncated_importance_weights(old, behavior, mask, cap=1.2)
    x, y = lp.clone().requires_grad_(), lp.clone().requires_grad_()
    loss, _ = ppo_clip_loss(x, old, adv, mask, weights=w)
    ref = ppo_loop(y, old, adv, mask, 0.2, w, "token")
    assert val(loss) == pytest.approx(val(ref))
    assert torch.allclose(torch.autograd.grad(loss, x)[0], torch.autograd.grad(ref, y)[0])


# ---------------------------------------------------------------- KL


def test_kl_penalty_hand_worked():
    # lp = ln 0.5, ref = ln 0.25 -> log r = ref - lp = ln 0.5 = -0.693147
    # k1 = -log r = 0.693147; k2 = 0.5 * 0.480453 = 0.240227; k3 = 0.5 + 0.693147 - 1 = 0.193147
    lp = torch.full((1, 2), math.log(0.5))
    ref = torch.full((1, 2), math.log(0.25))
    m = torch.ones(1, 2)
    assert val(kl_penalty(lp, ref, m, "k1")) == pytest.approx(0.693147, abs=1e-6)
    assert val(kl_penalty(lp, ref, m, "k2")) == pytest.approx(0.240227, abs=1e-6)
    assert val(kl_penalty(lp, ref, m, "k3")) == pytest.approx(0.193147, abs=1e-6)
    with pytest.raises(InvalidInput):
        kl_penalty(lp, ref, m, "k4")


def test_kl_estimators_are_exact_in_expectation():
    # pi = [0.5, 0.25, 0.25]: the "sample" tokens 0, 0, 1, 2 have exactly pi's frequencies, so the
    # token mean of k1 and of k3 equals E_pi[.] = KL(pi || ref) exactly.
    pi, ref = [0.5, 0.25, 0.25], [0.2, 0.3, 0.5]
    true_kl = sum(p * math.log(p / q) for p, q in zip(pi, ref, strict=True))  # 0.227...
    tokens = [0, 0, 1, 2]
    lp = torch.tensor([[math.log(pi[i]) for i in tokens]], dtype=D)
    rlp = torch.tensor([[math.log(ref[i]) for i in tokens]], dtype=D)
    m = torch.ones(1, 4)
    assert val(kl_penalty(lp, rlp, m, "k1")) == pytest.approx(true_kl)
    assert val(kl_penalty(lp, rlp, m, "k3")) == pytest.approx(true_kl)
    # behavior_mismatch: same trick, tokens drawn from behavior b = pi, learner = ref
    out = behavior_mismatch(rlp, lp, m)
    assert out["kl_behavior"] == pytest.approx(true_kl)
    # |ln(q/p)|: ln 2.5, ln 2.5, ln 1.2, ln 2 -> mean
    expected = (2 * math.log(2.5) + math.log(1.2) + math.log(2)) / 4
    assert out["logprob_abs_diff"] == pytest.approx(expected)


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
@pytest.mark.parametrize("mode", ["token", "sequence"])
def test_kl_penalty_gradient_matches_loop(estimator, mode):
    lp, ref, mask, _, _, _ = random_case(11)
    x, y = lp.clone().requires_grad_(), lp.clone().requires_grad_()
    out = kl_penalty(x, ref, mask, estimator, mode)
    rows = []
    for b in range(4):
        row = []
        for t in range(6):
            d = ref[b, t] - y[b, t]  # log r
            row.append({"k1": -d, "k2": d * d / 2, "k3": torch.exp(d) - d - 1}[estimator])
        rows.append(row)
    ref_out = aggregate_loop(rows, mask.int().tolist(), mode)
    assert val(out) == pytest.approx(val(ref_out))
    assert torch.allclose(torch.autograd.grad(out, x)[0], torch.autograd.grad(ref_out, y)[0])


def test_behavior_mismatch_zero_when_equal_and_ignores_padding():
    lp = torch.tensor([[-1.0, -2.0, float("nan")]])
    out = behavior_mismatch(lp, lp.clone(), torch.tensor([[1, 1, 0]]))
    assert out == {"kl_behavior": 0.0, "logprob_abs_diff": 0.0}


# ---------------------------------------------------------------- entropy


def test_entropy_hand_worked_and_extremes():
    # uniform over 4 -> ln 4; one allowed token (others -inf) -> 0; huge logits stay finite
    logits = torch.tensor(
        [[[0.0, 0.0, 0.0, 0.0], [3.0, float("-inf"), float("-inf"), float("-inf")]]],
        requires_grad=True,
    )
    assert val(entropy_from_logits(logits, torch.tensor([[1, 0]]))) == pytest.approx(math.log(4))
    h = entropy_from_logits(logits, torch.tensor([[0, 1]]))
    h.backward()
    assert val(h) == 0.0 and torch.isfinite(logits.grad).all()
    big = torch.tensor([[[1e4, 0.0, -1e4]]])
    assert val(entropy_from_logits(big, torch.ones(1, 1))) == pytest.approx(0.0, abs=1e-6)
    assert val(entropy_from_logits(big, torch.zeros(1, 1))) == 0.0  # no real token


def test_entropy_matches_categorical_with_chunking_and_bf16():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=gen) * 4
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]])
    per_token = torch.distributions.Categorical(logits=logits).entropy()
    expected = (per_token * mask).sum() / mask.sum()
    for chunk in (1, 4, 1024):
        got = entropy_from_logits(logits, mask, chunk_tokens=chunk)
        assert torch.allclose(got, expected, atol=1e-6)
    got = entropy_from_logits(logits.to(torch.bfloat16), mask)
    assert got.dtype == torch.float32 and val(got) == pytest.approx(val(expected), abs=0.05)
