"""Wire conversion: trajectories survive the round trip; bad fields are named."""

import pytest

from rewardloop import wire
from rewardloop.errors import InvalidInput
from rewardloop.trajectory import RewardPart, Trajectory


def make(**kw):
    base = dict(
        id="t1",
        group_id="g1",
        prompt_ids=[1, 2, 3],
        completion_ids=[4, 5],
        behavior_logprobs=[-0.5, -1.25],
        reward=1.0,
        policy_version=7,
        worker_id="w",
        group_size=8,
        prompt_key="alice",
        reward_parts=[RewardPart("like", 1.0, 1.0)],
    )
    base.update(kw)
    return Trajectory(**base)


def test_trajectory_round_trip():
    t = make()
    back = wire.trajectory_from_proto(wire.trajectory_to_proto(t), vocab_size=10)
    assert (
        back.id == t.id
        and back.prompt_ids == t.prompt_ids
        and back.completion_ids == t.completion_ids
    )
    assert back.behavior_logprobs == pytest.approx(t.behavior_logprobs)
    assert back.policy_version == 7 and back.group_size == 8 and back.prompt_key == "alice"
    assert back.reward_parts[0].name == "like"


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"id": ""}, "id"),
        ({"behavior_logprobs": [-0.5]}, "behavior_logprobs"),
        ({"behavior_logprobs": [-0.5, float("nan")]}, "behavior_logprobs"),
        ({"behavior_logprobs": [-0.5, 3.0]}, "behavior_logprobs"),
        ({"completion_ids": [], "behavior_logprobs": []}, "completion_ids"),
        ({"completion_ids": [4, 99]}, "completion_ids"),
        ({"reward": float("inf")}, "reward"),
        ({"policy_version": -1}, "policy_version"),
    ],
)
def test_malformed_trajectory_names_field(changes, field):
    msg = wire.trajectory_to_proto(make(**changes))
    with pytest.raises(InvalidInput) as info:
        wire.trajectory_from_proto(msg, vocab_size=10)
    assert info.value.field == field
