"""`learner.rloo_scale_std`: leave-one-out advantages divided by the group's population std.

Hand-worked: a reader stuck on a disliked topic clicks once in a group of four, [1, 0, 0, 0]:
leave-one-out gives 1 - 0 = 1 for the click and 0 - 1/3 = -1/3 for the others; the group mean
is 1/4 and its std sqrt(1/4 x 3/4) = 0.4330, so scaled: 2.3094 and -0.7698."""

import math

import pytest
import torch

from rewardloop.config import LearnerConfig
from rewardloop.learner.advantages import RunningMean, leave_one_out
from rewardloop.learner.algorithms import algorithm_for


def test_scaled_leave_one_out_by_hand():
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 2.0, 4.0, 3.0, 3.0, 5.0])
    g = torch.tensor([4, 4, 4, 4, 9, 9, 1, 1, 0])
    std = math.sqrt(0.25 * 0.75)
    # group 9 [2, 4]: -2, 2 over std 1 -> -2, 2;  group 1 equal -> 0;  group 0 alone -> 0
    expected = [1 / std, -1 / 3 / std, -1 / 3 / std, -1 / 3 / std, -2.0, 2.0, 0.0, 0.0, 0.0]
    assert leave_one_out(r, g, scale_std=True).tolist() == pytest.approx(expected, rel=1e-5)
    assert leave_one_out(r, g).tolist() == pytest.approx(
        [1.0, -1 / 3, -1 / 3, -1 / 3, -2.0, 2.0, 0.0, 0.0, 0.0], rel=1e-6
    )


def test_the_key_reaches_the_rloo_row_only():
    r = torch.tensor([1.0, 0.0, 0.0, 0.0])
    g = torch.zeros(4, dtype=torch.long)
    rloo = algorithm_for("rloo").advantages
    on, off = LearnerConfig(rloo_scale_std=True), LearnerConfig(rloo_scale_std=False)
    assert rloo(r, g, on, RunningMean()).tolist() == pytest.approx(
        [2.3094, -0.7698, -0.7698, -0.7698], abs=1e-4
    )
    assert rloo(r, g, off, RunningMean()).tolist() == pytest.approx([1, -1 / 3, -1 / 3, -1 / 3])
    grpo = algorithm_for("grpo").advantages  # grpo's own scale_std, untouched by the new key
    assert grpo(r, g, on, RunningMean()).tolist() == grpo(r, g, off, RunningMean()).tolist()
