"""`rollout.autoscale`'s decision, on hand-made step records (no Ray): add a worker when the
learner waits, remove one when it does not and the buffer is full, hold within cooldown, the
bounds and until a full window has been seen since the last change."""

from __future__ import annotations

import pytest

from rewardloop.cluster.autoscale import Autoscaler, window_wait_fraction
from rewardloop.config import load_config
from rewardloop.config.rollout import AutoscaleConfig
from rewardloop.errors import ConfigError


def steps(waits: list[float], step_s: float = 1.0) -> list[dict]:
    """Step records as the learner writes them: each took step_s, of which wait_s waiting."""
    return [{"time_s": (i + 1) * step_s, "wait_s": w} for i, w in enumerate(waits)]


def test_window_wait_fraction_is_waited_over_elapsed_of_the_last_steps():
    records = steps([0.0, 0.9, 0.5, 0.1])
    assert window_wait_fraction(records, 2) == pytest.approx((0.5 + 0.1) / 2.0)
    assert window_wait_fraction(records, 3) == pytest.approx((0.9 + 0.5 + 0.1) / 3.0)
    assert window_wait_fraction(records, 4) is None  # needs the step before the window


CFG = AutoscaleConfig(
    enabled=True,
    min_workers=1,
    max_workers=3,
    add_above_wait_fraction=0.5,
    remove_below_wait_fraction=0.05,
    remove_above_buffer_fraction=0.9,
    window_steps=2,
    cooldown_s=10.0,
)


def test_adds_a_worker_when_the_learner_waits():
    scaler = Autoscaler(CFG)
    assert scaler.decide(1, steps([0.8, 0.8, 0.8]), 0.0, since_change_s=60) == 2
    assert "waited 0.80" in scaler.last_reason
    assert scaler.decide(3, steps([0.8, 0.8, 0.8]), 0.0, since_change_s=60) == 3  # at max


def test_removes_one_only_when_it_hardly_waits_and_the_buffer_is_full():
    scaler = Autoscaler(CFG)
    busy = steps([0.0, 0.01, 0.01])
    assert scaler.decide(3, busy, buffer_fill=0.95, since_change_s=60) == 2
    assert scaler.decide(3, busy, buffer_fill=0.5, since_change_s=60) == 3
    assert scaler.decide(1, busy, buffer_fill=1.0, since_change_s=60) == 1  # at min


def test_holds_within_cooldown_and_until_a_window_was_seen():
    scaler = Autoscaler(CFG)
    waiting = steps([0.9, 0.9, 0.9])
    assert scaler.decide(1, waiting, 0.0, since_change_s=5) == 1
    assert scaler.decide(1, waiting[:2], 0.0, since_change_s=60) == 1
    # a count outside the bounds (set by hand with `rewardloop scale`) is brought back at once
    assert scaler.decide(5, waiting, 0.0, since_change_s=0) == 3


def test_config_keys_are_validated_with_the_key_named():
    cfg = load_config(None, ["rollout.autoscale.enabled=true", "rollout.autoscale.max_workers=6"])
    assert cfg.rollout.autoscale.max_workers == 6
    with pytest.raises(ConfigError, match=r"rollout.autoscale.max_workers: must be >= .*got 0"):
        load_config(None, ["rollout.autoscale.max_workers=0"])
    with pytest.raises(ConfigError, match="rollout.autoscale.remove_below_wait_fraction"):
        load_config(None, ["rollout.autoscale.remove_below_wait_fraction=0.6"])
    with pytest.raises(ConfigError, match="rollout.num_workers: must be within"):
        load_config(None, ["rollout.autoscale.enabled=true", "rollout.num_workers=9"])
    with pytest.raises(ConfigError, match="cluster.control_port"):
        load_config(None, ["cluster.control_port=70000"])
    with pytest.raises(ConfigError, match=r"learner.weights_port: must differ from learner.port"):
        load_config(None, ["learner.port=50061", "learner.weights_port=50061"])
