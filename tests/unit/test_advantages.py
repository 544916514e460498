"""Advantage estimators against hand-worked values and against plain Python loops."""

from __future__ import annotations

import math
import random
import statistics

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rewardloop.errors import InvalidInput
from rewardloop.learner.advantages import (
    RunningMean,
    group_relative,
    leave_one_out,
    reinforce_baseline,
    token_returns,
    whiten,
)

# ---------------------------------------------------------------- plain-loop references


def _groups(group_index: list[int]) -> dict[int, list[int]]:
    members: dict[int, list[int]] = {}
    for i, g in enumerate(group_index):
        members.setdefault(g, []).append(i)
    return members


def grpo_loop(rewards: list[float], group_index: list[int], scale_std: bool, eps: float):
    out = [0.0] * len(rewards)
    for idx in _groups(group_index).values():
        rs = [rewards[i] for i in idx]
        if len(set(rs)) == 1:
            continue  # no signal in the group: advantage 0
        mean = sum(rs) / len(rs)
        std = statistics.pstdev(rs)  # population std (divide by n)
        for i in idx:
            out[i] = (rewards[i] - mean) / (std + eps) if scale_std else rewards[i] - mean
    return out


def rloo_loop(rewards: list[float], group_index: list[int]):
    out = [0.0] * len(rewards)
    for idx in _groups(group_index).values():
        for i in idx:
            others = [rewards[j] for j in idx if j != i]
            if others and len(set(others + [rewards[i]])) > 1:
                out[i] = rewards[i] - sum(others) / len(others)
    return out


def returns_loop(rewards: list[list[float]], mask: list[list[int]], gamma: float):
    out = []
    for row_r, row_m in zip(rewards, mask, strict=True):
        row = [0.0] * len(row_r)
        running = 0.0
        for t in reversed(range(len(row_r))):
            if row_m[t]:
                running = row_r[t] + gamma * running
                row[t] = running
        out.append(row)
    return out


def random_batch(seed: int) -> tuple[list[float], list[int]]:
    """Uneven groups with arbitrary (negative, sparse) ids: sizes 1..6, some all-equal groups,
    some binary groups, interleaved in a shuffled order."""
    rng = random.Random(seed)
    rewards, ids = [], []
    for _ in range(rng.randint(3, 8)):
        gid = rng.randint(-1000, 1000)
        size = rng.choice([1, 1, 2, 3, 4, 6])
        kind = rng.choice(["normal", "binary", "equal"])
        for _ in range(size):
            if kind == "normal":
                rewards.append(rng.gauss(0.0, 3.0))
            elif kind == "binary":
                rewards.append(float(rng.random() < 0.5))
            else:
                rewards.append(0.1)
            ids.append(gid)
    order = list(range(len(rewards)))
    rng.shuffle(order)
    return [rewards[i] for i in order], [ids[i] for i in order]


# ---------------------------------------------------------------- hand-worked values


def test_group_relative_hand_worked():
    # group 7: [1, 0, 1, 0], mean 0.5, population var = mean(0.25 x4) = 0.25, std 0.5
    #          -> (r - 0.5) / 0.5 = [+1, -1, +1, -1]
    # group 3: [5] alone -> 0
    # group -2: [2, 4], mean 3, std 1 -> [-1, +1]
    r = torch.tensor([1.0, 0.0, 1.0, 0.0, 5.0, 2.0, 4.0])
    g = torch.tensor([7, 7, 7, 7, 3, -2, -2])
    adv = group_relative(r, g, eps=0.0)
    assert adv.tolist() == [1.0, -1.0, 1.0, -1.0, 0.0, -1.0, 1.0]
    # without std scaling: r - mean
    assert group_relative(r, g, scale_std=False).tolist() == [0.5, -0.5, 0.5, -0.5, 0.0, -1.0, 1.0]


def test_group_relative_uses_population_std():
    # [0, 1, 2]: mean 1, population var (1 + 0 + 1) / 3 = 2/3 -> A = [-1, 0, 1] / sqrt(2/3)
    # (the sample std would be 1 and give [-1, 0, 1])
    adv = group_relative(torch.tensor([0.0, 1.0, 2.0]), torch.tensor([0, 0, 0]), eps=0.0)
    k = 1 / math.sqrt(2 / 3)  # 1.2247...
    assert adv.tolist() == pytest.approx([-k, 0.0, k])


def test_group_relative_eps_shrinks():
    # {0, 1}: std 0.5 -> +-0.5 / (0.5 + 0.5) = +-0.5 with eps = 0.5
    adv = group_relative(torch.tensor([0.0, 1.0]), torch.tensor([4, 4]), eps=0.5)
    assert adv.tolist() == [-0.5, 0.5]


def test_equal_rewards_give_exactly_zero_even_with_float_roundoff():
    # 0.1 is not representable: sum([0.1] * 7) / 7 != 0.1 in float32, and (r - mean) / eps would
    # then be a spurious non-zero advantage. Equal groups must be exactly 0.
    r = torch.full((7,), 0.1, dtype=torch.float32)
    g = torch.zeros(7, dtype=torch.long)
    assert group_relative(r, g).tolist() == [0.0] * 7
    assert leave_one_out(r, g).tolist() == [0.0] * 7
    # a spread whose square underflows float64 is no signal either (eps = 0 must not give inf)
    tiny = torch.tensor([0.0, 3e-249], dtype=torch.float64)
    assert group_relative(tiny, torch.tensor([1, 1]), eps=0.0).tolist() == [0.0, 0.0]


def test_leave_one_out_hand_worked():
    # group 7 [1, 0, 1, 0]: for r=1 the others [0, 1, 0] average 1/3 -> 1 - 1/3 = 2/3;
    #                        for r=0 the others [1, 0, 1] average 2/3 -> -2/3
    # group -2 [2, 4]: 2 - 4 = -2, 4 - 2 = 2;  group 3 [5] alone -> 0
    r = torch.tensor([1.0, 0.0, 1.0, 0.0, 5.0, 2.0, 4.0])
    g = torch.tensor([7, 7, 7, 7, 3, -2, -2])
    assert leave_one_out(r, g).tolist() == pytest.approx([2 / 3, -2 / 3, 2 / 3, -2 / 3, 0, -2, 2])


def test_reinforce_baseline_hand_worked():
    b = RunningMean(decay=0.5)
    assert b.value is None
    # call 1: baseline starts at the batch mean 2 -> A = [-1, 1]; value stays 2
    assert reinforce_baseline(torch.tensor([1.0, 3.0]), b).tolist() == [-1.0, 1.0]
    assert b.value == 2.0
    # call 2: A uses the old value 2 -> [2, 4]; then value = 0.5 * 2 + 0.5 * 5 = 3.5
    assert reinforce_baseline(torch.tensor([4.0, 6.0]), b).tolist() == [2.0, 4.0]
    assert b.value == 3.5
    # call 3: A = 0 - 3.5; value = 0.5 * 3.5 + 0.5 * 0 = 1.75
    assert reinforce_baseline(torch.tensor([0.0]), b).tolist() == [-3.5]
    assert b.value == 1.75
    b.update(torch.tensor([]))  # an empty batch changes nothing
    assert b.value == 1.75


def test_token_returns_hand_worked():
    # gamma 0.5, last token padding: G2 = 3, G1 = 2 + 0.5 * 3 = 3.5, G0 = 1 + 0.5 * 3.5 = 2.75
    r = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    out = token_returns(r, torch.tensor([[1, 1, 1, 0]]), gamma=0.5)
    assert out.tolist() == [[2.75, 3.5, 3.0, 0.0]]
    # masked token inside: its reward 9 is ignored and it is not a discount step:
    # G3 = 4, G2 = 3 + 0.5 * 4 = 5, G1 = 0 (masked), G0 = 1 + 0.5 * G2 = 3.5
    r = torch.tensor([[1.0, 9.0, 3.0, 4.0]])
    out = token_returns(r, torch.tensor([[True, False, True, True]]), gamma=0.5)
    assert out.tolist() == [[3.5, 0.0, 5.0, 4.0]]
    # gamma 1: reward-to-go is a reversed cumulative sum
    out = token_returns(torch.tensor([[0.0, 1.0, 0.0, 2.0]]), torch.ones(1, 4), gamma=1.0)
    assert out.tolist() == [[3.0, 3.0, 2.0, 2.0]]


# ---------------------------------------------------------------- against the loops


@pytest.mark.parametrize("seed", range(6))
def test_group_relative_matches_loop(seed):
    rewards, ids = random_batch(seed)
    r, g = torch.tensor(rewards, dtype=torch.float64), torch.tensor(ids)
    for scale_std in (True, False):
        expected = grpo_loop(rewards, ids, scale_std, 1e-6)
        got = group_relative(r, g, scale_std=scale_std).tolist()
        assert got == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_leave_one_out_matches_loop(seed):
    rewards, ids = random_batch(seed)
    got = leave_one_out(torch.tensor(rewards), torch.tensor(ids)).tolist()
    assert got == pytest.approx(rloo_loop(rewards, ids), abs=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_token_returns_matches_loop(seed):
    gen = torch.Generator().manual_seed(seed)
    rewards = torch.randn(3, 7, generator=gen, dtype=torch.float64)
    mask = torch.rand(3, 7, generator=gen) < 0.7
    mask[0] = False  # an empty row
    for gamma in (1.0, 0.9, 0.0):
        expected = returns_loop(rewards.tolist(), mask.int().tolist(), gamma)
        got = token_returns(rewards, mask, gamma)
        assert torch.allclose(got, torch.tensor(expected, dtype=torch.float64))
        assert (got[~mask] == 0).all()


# ---------------------------------------------------------------- properties


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(-3, 3), st.floats(-100, 100).map(lambda x: round(x, 3))),
        min_size=1,
        max_size=12,
    ),
    st.floats(0.1, 10.0),
    st.floats(-5.0, 5.0),
)
def test_group_relative_properties(pairs, scale, shift):
    ids = torch.tensor([g for g, _ in pairs])
    r = torch.tensor([x for _, x in pairs], dtype=torch.float64)
    adv = group_relative(r, ids, eps=0.0)
    for g in ids.unique():
        members = adv[ids == g]
        assert abs(float(members.sum())) < 1e-6  # zero mean within each group
        if len(members) > 1 and float(members.abs().max()) > 0:
            # unit population std within each non-constant group
            assert float(members.pow(2).mean()) == pytest.approx(1.0)
    # invariant to a positive affine change of the reward scale
    affine = group_relative(scale * r + shift, ids, eps=0.0)
    nonconst = (adv != 0) & (affine != 0)
    assert torch.allclose(affine[nonconst], adv[nonconst], atol=1e-6)
    # RLOO is GRPO-without-std scaled by n / (n - 1)
    counts = torch.tensor([int((ids == g).sum()) for g in ids.tolist()], dtype=torch.float64)
    centered = group_relative(r, ids, scale_std=False)
    expected = torch.where(counts > 1, centered * counts / (counts - 1).clamp(min=1), 0.0)
    assert torch.allclose(leave_one_out(r, ids), expected, atol=1e-9)


# ---------------------------------------------------------------- edges and bad input


def test_empty_batch_and_integer_rewards():
    empty = torch.tensor([], dtype=torch.float32)
    assert group_relative(empty, torch.tensor([], dtype=torch.long)).numel() == 0
    assert leave_one_out(empty, torch.tensor([], dtype=torch.long)).numel() == 0
    adv = group_relative(torch.tensor([0, 1]), torch.tensor([1, 1]), eps=0.0)
    assert adv.is_floating_point() and adv.tolist() == [-1.0, 1.0]


def test_bad_input_names_the_field():
    with pytest.raises(InvalidInput) as e:
        group_relative(torch.tensor([1.0, float("nan")]), torch.tensor([0, 0]))
    assert e.value.field == "rewards"
    with pytest.raises(InvalidInput) as e:
        leave_one_out(torch.tensor([1.0, 2.0]), torch.tensor([0, 0, 1]))
    assert e.value.field == "group_index"
    with pytest.raises(InvalidInput) as e:
        token_returns(torch.zeros(2, 3), torch.ones(2, 4))
    assert e.value.field == "mask"
    with pytest.raises(InvalidInput):
        RunningMean(decay=1.5)


def test_whiten():
    x = torch.tensor([[1.0, 2.0, 3.0], [100.0, 5.0, -7.0]])
    mask = torch.tensor([[1, 1, 1], [0, 1, 0]])
    w = whiten(x, mask)
    # real entries [1, 2, 3, 5]: mean 2.75,
    # population var (3.0625 + 0.5625 + 0.0625 + 5.0625) / 4 = 2.1875
    s = math.sqrt(2.1875)
    expected = torch.tensor([[-1.75 / s, -0.75 / s, 0.25 / s], [0, 2.25 / s, 0]])
    assert torch.allclose(w, expected, atol=1e-6)
    full = whiten(x)
    assert float(full.mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(full.pow(2).mean()) == pytest.approx(1.0, abs=1e-5)
