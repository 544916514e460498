"""Config: YAML + --set overrides, validation messages that name the key and the fix."""

import pytest

from rewardloop.config import RunConfig, load_config, parse_override
from rewardloop.errors import ConfigError


def test_defaults_are_valid():
    cfg = load_config()
    assert isinstance(cfg, RunConfig)
    assert cfg.learner.algorithm == "grpo"
    assert cfg.rollout.group_size == 8


def test_yaml_and_overrides_merge(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("learner:\n  lr: 0.01\n  algorithm: rloo\nrollout:\n  num_workers: 2\n")
    cfg = load_config(
        path, ["learner.lr=1e-4", "rollout.temperature=0.7", "learner.scale_std=false"]
    )
    assert cfg.learner.lr == pytest.approx(1e-4)
    assert cfg.learner.algorithm == "rloo"
    assert cfg.rollout.num_workers == 2
    assert cfg.rollout.temperature == pytest.approx(0.7)
    assert cfg.learner.scale_std is False


@pytest.mark.parametrize(
    "override, key",
    [
        ("learner.lr=-1", "learner.lr"),
        ("learner.algorithm=sarsa", "learner.algorithm"),
        ("rollout.group_size=1", "rollout.group_size"),
        ("rollout.weight_sync=carrier-pigeon", "rollout.weight_sync"),
        ("learner.nope=3", "learner.nope"),
        ("rollout.num_workers=two", "rollout.num_workers"),
        ("learner.buffer_capacity=4", "learner.buffer_capacity"),
        ("reward.kind=http", "reward.url"),
        ("learner.max_streams=0", "learner.max_streams"),
        ("learner.max_trajectory_tokens=1", "learner.max_trajectory_tokens"),
    ],
)
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert str(info.value).startswith(key)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.yaml")


def test_override_syntax():
    assert parse_override("a.b=3") == ("a.b", 3)
    assert parse_override("a.b=1e-5") == ("a.b", 1e-5)
    with pytest.raises(ConfigError):
        parse_override("no-equals-sign")


def test_automatic_buffer_is_the_staleness_budget():
    from rewardloop.config import buffer_capacity

    assert buffer_capacity(load_config(None, [])) == 24  # one step: lag <= 1
    assert buffer_capacity(load_config(None, ["learner.max_staleness=2"])) == 48
    # workers share it in whole groups (credits.py): more workers, same staleness budget
    assert buffer_capacity(load_config(None, ["rollout.num_workers=3"])) == 24
    assert buffer_capacity(load_config(None, ["learner.buffer_capacity=100"])) == 100


def test_idle_workers_hint_names_the_budget_and_the_fix():
    from rewardloop.cluster.pool import idle_workers_hint

    fits = load_config(None, ["rollout.num_workers=3"])  # 3 groups per step, staleness 1
    assert idle_workers_hint(fits) == ""
    too_many = load_config(None, ["rollout.num_workers=6"])
    hint = idle_workers_hint(too_many)
    assert "3 worker(s) wait idle" in hint and "learner.max_staleness" in hint
    budget = load_config(None, ["rollout.num_workers=6", "learner.max_staleness=2"])
    assert idle_workers_hint(budget) == ""


def test_more_workers_than_streams_names_the_fix():
    with pytest.raises(ConfigError, match=r"^learner.max_streams: .*--set learner.max_streams=9"):
        load_config(None, ["rollout.num_workers=9", "learner.max_streams=8"])
