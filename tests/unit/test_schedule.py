"""Warm-up and decay schedules of the learning rate, against hand-computed values."""

import pytest

from rewardloop.learner.schedule import lr_factor


def test_warmup_then_decay():
    assert lr_factor(0, "constant", 4, 100) == pytest.approx(0.25)
    assert lr_factor(3, "constant", 4, 100) == pytest.approx(1.0)
    assert lr_factor(50, "constant", 4, 100) == 1.0
    assert lr_factor(0, "linear", 0, 100) == pytest.approx(1.0)
    assert lr_factor(100, "linear", 0, 100) == pytest.approx(0.1)
    assert lr_factor(50, "cosine", 0, 100) == pytest.approx(0.55)
    assert lr_factor(100, "cosine", 0, 100) == pytest.approx(0.1)
