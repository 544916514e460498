"""cluster.learner_resources / rollout_resources / placement_strategy / placement_timeout_s:
validated on load with errors naming the key, and turned into Ray bundles and actor options."""

from __future__ import annotations

import pytest

from rewardloop.config import PLACEMENT_STRATEGIES, load_config
from rewardloop.errors import ConfigError


def test_defaults_are_one_cpu_each_packed_with_a_deadline():
    from rewardloop.cluster.placement import learner_bundle, rollout_bundle, rollout_options

    cfg = load_config(None, ["learner.device=cpu"])
    assert cfg.cluster.placement_strategy == "PACK" == PLACEMENT_STRATEGIES[0]
    assert cfg.cluster.placement_timeout_s == 120
    assert learner_bundle(cfg) == {"CPU": 1.0}
    assert rollout_bundle(cfg) == {"CPU": 1.0}
    assert rollout_options(cfg) == {"num_cpus": 1.0, "num_gpus": 0}


def test_fractional_gpus_and_custom_resources_become_actor_options():
    from rewardloop.cluster.placement import learner_bundle, learner_options, rollout_options

    cfg = load_config(
        None,
        [
            "cluster.learner_resources={CPU: 2, GPU: 0.5, learner_node: 1}",
            "cluster.rollout_resources={CPU: 0.5, rollout_node: 0.01}",
        ],
    )
    assert learner_bundle(cfg) == {"CPU": 2.0, "GPU": 0.5, "learner_node": 1.0}
    assert learner_options(cfg) == {
        "num_cpus": 2.0,
        "num_gpus": 0.5,
        "resources": {"learner_node": 1.0},
    }
    assert rollout_options(cfg) == {
        "num_cpus": 0.5,
        "num_gpus": 0,
        "resources": {"rollout_node": 0.01},
    }


def test_a_gpu_in_learner_resources_wins_over_learner_gpus():
    from rewardloop.cluster.placement import learner_bundle

    cfg = load_config(None, ["cluster.learner_gpus=1", "cluster.learner_resources={GPU: 0.25}"])
    assert learner_bundle(cfg)["GPU"] == 0.25
    cfg = load_config(None, ["cluster.learner_gpus=1", "learner.device=cuda"])
    assert learner_bundle(cfg) == {"CPU": 1.0, "GPU": 1.0}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("cluster.learner_resources={CPU: -1}", "cluster.learner_resources.CPU: must be a finite"),
        (
            "cluster.rollout_resources={GPU: .inf}",
            "cluster.rollout_resources.GPU: must be a finite",
        ),
        ("cluster.rollout_resources={x: true}", "cluster.rollout_resources.x: must be a finite"),
        ("cluster.learner_resources=4", "cluster.learner_resources: must be a mapping"),
        ("cluster.rollout_resources={CPU: 0}", "cluster.rollout_resources: asks for nothing"),
        ("cluster.placement_strategy=pack", "use one of PACK, SPREAD, STRICT_SPREAD"),
        ("cluster.placement_timeout_s=0", "cluster.placement_timeout_s: must be a finite"),
        ("cluster.placement_timeout_s=.inf", "cluster.placement_timeout_s: must be a finite"),
    ],
)
def test_bad_placement_keys_are_refused_with_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(None, [override])
