"""Wire conversion: trajectories survive the round trip as packed arrays; bad fields are named,
and a bad trajectory in a batch is rejected alone."""

import random
import struct

import numpy as np
import pytest
import torch

from rewardloop import wire
from rewardloop.errors import InvalidInput
from rewardloop.pb import trajectory_pb2
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
        feedback_source="persona",
        feedback_latency_s=0.25,
        rater="alice",
    )
    base.update(kw)
    return Trajectory(**base)


def test_trajectory_round_trip():
    t = make()
    back = wire.trajectory_from_proto(wire.trajectory_to_proto(t), vocab_size=10)
    assert back.id == t.id and back.group_id == "g1"
    assert back.prompt_ids.dtype == np.int32 and back.prompt_ids.tolist() == [1, 2, 3]
    assert back.completion_ids.tolist() == [4, 5]
    assert back.behavior_logprobs.dtype == np.float32
    assert back.behavior_logprobs.tolist() == [-0.5, -1.25]  # exact in float32
    assert back.policy_version == 7 and back.group_size == 8 and back.prompt_key == "alice"
    assert back.reward_parts == [RewardPart("like", 1.0, 1.0)]
    assert (back.feedback_source, back.feedback_latency_s, back.rater) == ("persona", 0.25, "alice")
    assert back.worker_id == "w" and back.reward == 1.0 and back.num_tokens == 5


def test_arrays_travel_as_little_endian_int32_and_float32():
    msg = wire.trajectory_to_proto(make(prompt_ids=[1, 70000, 3]))
    assert msg.prompt_ids == struct.pack("<3i", 1, 70000, 3)
    assert msg.completion_ids == struct.pack("<2i", 4, 5)
    assert msg.behavior_logprobs == struct.pack("<2f", -0.5, -1.25)


@pytest.mark.parametrize(
    "convert",
    [list, np.array, lambda x: np.array(x, dtype=np.int64), torch.tensor],
    ids=["list", "array", "int64-array", "tensor"],
)
def test_trajectory_holds_int32_and_float32_arrays_whatever_it_is_given(convert):
    t = make(prompt_ids=convert([1, 2, 3]), behavior_logprobs=convert([-0.5, -1.25]))
    assert isinstance(t.prompt_ids, np.ndarray) and t.prompt_ids.dtype == np.int32
    assert isinstance(t.completion_ids, np.ndarray) and t.completion_ids.dtype == np.int32
    assert t.behavior_logprobs.dtype == np.float32
    assert wire.trajectory_to_proto(t).prompt_ids == struct.pack("<3i", 1, 2, 3)


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"id": ""}, "id"),
        ({"id": "x" * (wire.MAX_ID_LEN + 1)}, "id"),
        ({"group_id": ""}, "group_id"),
        ({"prompt_ids": []}, "prompt_ids"),
        ({"completion_ids": [], "behavior_logprobs": []}, "completion_ids"),
        ({"behavior_logprobs": [-0.5]}, "behavior_logprobs"),
        ({"behavior_logprobs": [-0.5, -0.1, -0.2]}, "behavior_logprobs"),
        ({"behavior_logprobs": [-0.5, float("nan")]}, "behavior_logprobs"),
        ({"behavior_logprobs": [float("-inf"), -0.5]}, "behavior_logprobs"),
        ({"behavior_logprobs": [-0.5, float("inf")]}, "behavior_logprobs"),
        ({"behavior_logprobs": [-0.5, 3.0]}, "behavior_logprobs"),
        ({"completion_ids": [4, 10]}, "completion_ids"),
        ({"completion_ids": [-1, 4]}, "completion_ids"),
        ({"prompt_ids": [1, 2, 99]}, "prompt_ids"),
        ({"prompt_ids": [-7, 2, 3]}, "prompt_ids"),
        ({"reward": float("inf")}, "reward"),
        ({"reward": float("nan")}, "reward"),
        ({"policy_version": -1}, "policy_version"),
        ({"group_size": -2}, "group_size"),
    ],
)
def test_malformed_trajectory_names_field(changes, field):
    msg = wire.trajectory_to_proto(make(**changes))
    with pytest.raises(InvalidInput) as info:
        wire.trajectory_from_proto(msg, vocab_size=10)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


@pytest.mark.parametrize(
    "field, blob",
    [
        ("prompt_ids", b"\x01\x00\x00\x00\x02"),  # 5 bytes: not whole int32s
        ("completion_ids", b"\x04\x00\x00"),
        ("behavior_logprobs", b"\x00\x00\x00\xbf\x00"),  # 5 bytes for 2 tokens (8 bytes)
    ],
)
def test_byte_lengths_must_be_whole_values(field, blob):
    msg = wire.trajectory_to_proto(make())
    setattr(msg, field, blob)
    with pytest.raises(InvalidInput) as info:
        wire.trajectory_from_proto(msg, vocab_size=10)
    assert info.value.field == field


def test_without_vocab_size_only_negative_ids_are_rejected():
    big = wire.trajectory_from_proto(wire.trajectory_to_proto(make(completion_ids=[4, 2**31 - 1])))
    assert big.completion_ids.tolist() == [4, 2**31 - 1]
    with pytest.raises(InvalidInput, match="completion_ids: token ids must be >= 0"):
        wire.trajectory_from_proto(wire.trajectory_to_proto(make(completion_ids=[4, -1])))


def test_bad_trajectory_in_a_batch_is_rejected_alone_and_the_rest_decode_exactly():
    good = [
        make(
            id=f"ok{i}",
            prompt_ids=[i, i + 1],
            completion_ids=[i] * (i + 1),
            behavior_logprobs=[-0.1 * (i + 1)] * (i + 1),
        )
        for i in range(6)
    ]
    bad = {
        1: make(id="short-lp", behavior_logprobs=[-0.5]),  # caught before the array pass
        3: make(id="nan", behavior_logprobs=[-0.5, float("nan")]),  # caught by the array pass
        4: make(id="vocab", prompt_ids=[1, 2, 10]),
    }
    trajs = list(good)
    for at, t in sorted(bad.items()):
        trajs.insert(at, t)
    out = wire.trajectories_from_protos([wire.trajectory_to_proto(t) for t in trajs], 10)
    assert len(out) == len(trajs)
    verdicts = {t.id: o for t, o in zip(trajs, out, strict=True)}
    assert verdicts["short-lp"].field == "behavior_logprobs"
    assert verdicts["nan"].field == "behavior_logprobs"
    assert verdicts["vocab"].field == "prompt_ids"
    for t in good:  # every good one got exactly its own slice of the batch's arrays
        d = verdicts[t.id]
        assert isinstance(d, Trajectory) and d.id == t.id
        assert np.array_equal(d.prompt_ids, t.prompt_ids)
        assert np.array_equal(d.completion_ids, t.completion_ids)
        assert np.array_equal(d.behavior_logprobs, t.behavior_logprobs)


def test_empty_and_all_bad_batches():
    assert wire.trajectories_from_protos([], 10) == []
    out = wire.trajectories_from_protos([wire.trajectory_to_proto(make(id=""))], 10)
    assert isinstance(out[0], InvalidInput) and out[0].field == "id"


def test_random_bytes_never_raise_anything_but_a_verdict():
    rng = random.Random(0)
    msgs = []
    for _ in range(300):
        msg = wire.trajectory_to_proto(make(id=f"r{len(msgs)}"))
        for field in ("prompt_ids", "completion_ids", "behavior_logprobs"):
            if rng.random() < 0.5:
                setattr(msg, field, rng.randbytes(rng.choice([0, 1, 4, 7, 8, 12])))
        msgs.append(msg)
    out = wire.trajectories_from_protos(msgs, vocab_size=1000)
    assert all(isinstance(o, Trajectory | InvalidInput) for o in out)
    assert any(isinstance(o, Trajectory) for o in out)
    assert any(isinstance(o, InvalidInput) for o in out)
    for o in out:
        if isinstance(o, Trajectory):  # what passed really is valid
            assert len(o.behavior_logprobs) == len(o.completion_ids) > 0
            assert o.completion_ids.min() >= 0 and o.completion_ids.max() < 1000
            assert np.isfinite(o.behavior_logprobs).all()
            assert o.behavior_logprobs.max() <= wire.LOGPROB_MAX


def test_batch_from_the_wire_parses_to_the_same_verdicts():
    """Through real serialization, as the ingest server receives it."""
    trajs = [make(id="a"), make(id="b", completion_ids=[4, 11]), make(id="c")]
    blob = trajectory_pb2.TrajectoryBatch(
        batch_seq=1, trajectories=[wire.trajectory_to_proto(t) for t in trajs]
    ).SerializeToString()
    batch = trajectory_pb2.TrajectoryBatch.FromString(blob)
    out = wire.trajectories_from_protos(batch.trajectories, vocab_size=10)
    assert [o.id for o in out if isinstance(o, Trajectory)] == ["a", "c"]
    assert out[1].field == "completion_ids"


def test_a_trajectory_longer_than_max_tokens_is_rejected_naming_the_key():
    long_completion = make(id="long", completion_ids=[1] * 9, behavior_logprobs=[-0.1] * 9)
    long_prompt = make(id="prompt", prompt_ids=[1] * 11)
    fits = make(id="fits", prompt_ids=[1] * 3, completion_ids=[1] * 7, behavior_logprobs=[-0.1] * 7)
    msgs = [wire.trajectory_to_proto(t) for t in (long_completion, long_prompt, fits)]
    out = wire.trajectories_from_protos(msgs, vocab_size=10, max_tokens=10)
    assert isinstance(out[0], InvalidInput) and out[0].field == "completion_ids"
    assert str(out[0]) == (
        "completion_ids: 9 tokens (+ 3 prompt tokens) > learner.max_trajectory_tokens=10"
    )
    assert isinstance(out[1], InvalidInput) and out[1].field == "prompt_ids"
    assert str(out[1]) == "prompt_ids: 11 tokens > learner.max_trajectory_tokens=10"
    assert isinstance(out[2], Trajectory) and out[2].num_tokens == 10  # the bound is inclusive
    assert all(isinstance(o, Trajectory) for o in wire.trajectories_from_protos(msgs, 10))


def test_the_length_bound_is_read_from_byte_lengths_before_any_array():
    """7.8 M completion tokens are refused without decoding them (and without a copy)."""
    n = 7_800_000
    msg = wire.trajectory_to_proto(make(id="huge"))
    msg.completion_ids = b"\0" * (4 * n)
    msg.behavior_logprobs = b"\0" * (4 * n)
    with pytest.raises(InvalidInput, match=rf"^completion_ids: {n} tokens .*=65536$"):
        wire.trajectory_from_proto(msg, vocab_size=10, max_tokens=65536)
