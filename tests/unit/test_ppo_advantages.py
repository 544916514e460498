"""ppo's advantages, through the algorithm table: a running baseline scaled by the batch's std.

Issue 14: whitening re-centred on the batch mean, so the baseline had no effect, and a batch of
equal rewards came out with non-zero advantages (round-off over eps)."""

import math

import pytest
import torch

from rewardloop.config import LearnerConfig
from rewardloop.learner.advantages import RunningMean, whiten
from rewardloop.learner.algorithms import ALGORITHM_TABLE


def ppo_advantages(rewards, baseline_value, decay=0.9):
    baseline = RunningMean(decay=decay)
    baseline.value = baseline_value
    r = torch.tensor(rewards)
    a = ALGORITHM_TABLE["ppo"].advantages(r, torch.arange(len(rewards)), LearnerConfig(), baseline)
    return a, baseline


def test_hand_worked_four_samples():
    # r = [1, 2, 3, 6], b = 2 (read before the update): r - b = [-1, 0, 1, 4].
    # batch mean 3, deviations [-2, -1, 0, 3], population var (4 + 1 + 0 + 9) / 4 = 3.5.
    # A = [-1, 0, 1, 4] / sqrt(3.5) = [-0.534522, 0, 0.534522, 2.138090]
    # then b <- 0.9 * 2 + 0.1 * 3 = 2.1
    a, baseline = ppo_advantages([1.0, 2.0, 3.0, 6.0], 2.0)
    s = math.sqrt(3.5)
    assert a.tolist() == pytest.approx([-1 / s, 0.0, 1 / s, 4 / s], abs=1e-6)
    assert a.tolist() == pytest.approx([-0.534522, 0.0, 0.534522, 2.138090], abs=1e-6)
    assert baseline.value == pytest.approx(2.1)


def test_the_baseline_changes_the_advantages():
    rewards = [0.0, 1.0, 0.5, 0.2]  # mean 0.425, population std 0.376663
    std = float(torch.tensor(rewards, dtype=torch.float64).std(unbiased=False))
    got = {b: ppo_advantages(rewards, b)[0] for b in (None, -50.0, 123.0)}
    for b, a in got.items():
        b_used = 0.425 if b is None else b  # the first batch baselines itself with its mean
        expected = [(r - b_used) / std for r in rewards]
        assert a.tolist() == pytest.approx(expected, rel=1e-5)
    assert (got[-50.0] > 0).all() and (got[123.0] < 0).all()
    assert not torch.allclose(got[None], got[-50.0]) and not torch.allclose(got[None], got[123.0])
    # the spread within the batch is the same whatever the baseline: one std apart per 1/std
    assert torch.allclose(got[-50.0] - got[-50.0][0], got[123.0] - got[123.0][0], atol=1e-3)


@pytest.mark.parametrize("b", [None, 0.0, 0.5, -3.0])
def test_a_batch_of_equal_rewards_gets_zero_advantages(b):
    a, baseline = ppo_advantages([0.1] * 24, b)
    assert a.tolist() == [0.0] * 24
    assert baseline.value == pytest.approx(0.1 if b is None else 0.9 * b + 0.1 * 0.1)


def test_whiten_guards_entries_without_spread():
    x = torch.tensor([[0.1, 0.1, 7.0], [0.1, 0.1, 0.1]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])  # the real entries are all 0.1
    assert whiten(x, mask).tolist() == [[0.0] * 3] * 2
    assert whiten(x, mask, center=False).tolist() == [[0.0] * 3] * 2
    assert whiten(torch.zeros(0)).shape == (0,)
    # not centred: the scale is the std, the offset stays
    y = whiten(torch.tensor([1.0, 3.0]), center=False)  # std 1
    assert y.tolist() == pytest.approx([1.0, 3.0])


# -- learner.ppo_baseline: group (REINFORCE++-baseline) --------------------------------------
def test_group_baseline_hand_worked():
    # groups {1, 0, 0, 0} and {1, 1, 0, 0}: means 0.25 and 0.5, centred
    # [0.75, -0.25, -0.25, -0.25, 0.5, 0.5, -0.5, -0.5]; their batch mean is 0 and population
    # var (0.5625 + 3 * 0.0625 + 4 * 0.25) / 8 = 0.21875, std 0.467707:
    # A = [1.603567, -0.534522 x 3, 1.069045 x 2, -1.069045 x 2]. The running mean is unused.
    r = torch.tensor([1.0, 0, 0, 0, 1, 1, 0, 0])
    gi = torch.tensor([7, 7, 7, 7, 3, 3, 3, 3])
    baseline = RunningMean()
    cfg = LearnerConfig(algorithm="ppo", ppo_baseline="group")
    a = ALGORITHM_TABLE["ppo"].advantages(r, gi, cfg, baseline)
    assert a.tolist() == pytest.approx(
        [1.603567] + [-0.534522] * 3 + [1.069045] * 2 + [-1.069045] * 2, abs=1e-6
    )
    assert baseline.value is None


def test_group_baseline_ignores_how_a_prompt_does_against_the_others():
    # the same two groups, the second lifted by 10: a running mean would push all of its
    # samples up; the group baseline gives it the same advantages as before, and a group of
    # equal rewards gets 0.
    cfg = LearnerConfig(algorithm="ppo", ppo_baseline="group")
    gi = torch.tensor([0, 0, 1, 1, 2, 2])
    low = torch.tensor([1.0, 0, 1, 0, 5, 5])
    high = torch.tensor([1.0, 0, 11, 10, 5, 5])
    a_low = ALGORITHM_TABLE["ppo"].advantages(low, gi, cfg, RunningMean())
    a_high = ALGORITHM_TABLE["ppo"].advantages(high, gi, cfg, RunningMean())
    assert a_low.tolist() == pytest.approx(a_high.tolist())
    assert a_low[4:].tolist() == [0.0, 0.0]
    assert (
        ALGORITHM_TABLE["ppo"].advantages(low * 0 + 3, gi, cfg, RunningMean()).tolist() == [0.0] * 6
    )


def test_ppo_baseline_is_validated_naming_the_key():
    from rewardloop.errors import ConfigError

    with pytest.raises(ConfigError, match="learner.ppo_baseline: use one of running, group"):
        LearnerConfig(ppo_baseline="critic")
