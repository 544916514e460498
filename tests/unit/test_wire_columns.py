"""The column form of a batch (`rewardloop.wire_columns`): the round trip is exact, every bad
field is named as in the row form, a bad row is rejected alone, a column of the wrong shape
rejects the batch naming the column, and `accepted_ids` reads an `accepted_rest` Ack exactly."""

import random

import numpy as np
import pytest
from test_wire import make

from rewardloop import wire, wire_columns
from rewardloop.errors import InvalidInput
from rewardloop.pb import trajectory_pb2
from rewardloop.trajectory import RewardPart, Trajectory


def over_the_wire(trajs, **kw):
    """Encode, serialize, parse and decode, as client and ingest server do."""
    blob = wire_columns.batch_to_columns(3, trajs).SerializeToString()
    batch = trajectory_pb2.TrajectoryBatch.FromString(blob)
    assert batch.batch_seq == 3 and not batch.trajectories
    return wire_columns.trajectories_from_columns(batch.columns, **kw)


def varied(k: int) -> list[Trajectory]:
    """k trajectories with different lengths, 0-2 reward parts and every field set."""
    return [
        make(
            id=f"t{i}",
            group_id=f"g{i // 2}",
            prompt_ids=list(range(1, 2 + i % 3)),
            completion_ids=[(i + j) % 10 for j in range(1 + i % 4)],
            behavior_logprobs=[-0.125 * (j + 1) for j in range(1 + i % 4)],
            reward=0.5 * i,
            policy_version=i,
            worker_id=f"w{i % 2}",
            group_size=i % 3,
            prompt_key=f"k{i}",
            reward_parts=[RewardPart(f"p{j}", 0.25 * j, 0.5) for j in range(i % 3)],
            feedback_source="human" if i % 2 else "",
            feedback_latency_s=1.5 * i,
            rater=f"r{i}",
        )
        for i in range(k)
    ]


def fields(t: Trajectory) -> dict:
    out = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in vars(t).items()}
    out["dtypes"] = (t.prompt_ids.dtype, t.completion_ids.dtype, t.behavior_logprobs.dtype)
    return out


def test_round_trip_equals_the_row_form_field_for_field():
    trajs = varied(9)
    ids, out = over_the_wire(trajs, vocab_size=10)
    rows = wire.trajectories_from_protos([wire.trajectory_to_proto(t) for t in trajs], 10)
    assert ids == [t.id for t in trajs]
    assert [fields(o) for o in out] == [fields(r) for r in rows]
    assert out[5].reward_parts == [RewardPart("p0", 0.0, 0.5), RewardPart("p1", 0.25, 0.5)]
    assert out[0].group_size == 1  # 0 on the wire means 1, as in the row form
    assert out[3].completion_ids.dtype == np.int32 and out[3].behavior_logprobs.dtype == np.float32


def test_decoded_arrays_are_read_only_views_of_the_received_bytes():
    _, out = over_the_wire(varied(4), vocab_size=10)
    for t in out:
        assert not t.completion_ids.flags.writeable and t.completion_ids.base is not None
    assert out[1].completion_ids.base is out[2].completion_ids.base  # one buffer, no copies


def test_optional_columns_may_be_empty():
    batch = trajectory_pb2.TrajectoryBatch()
    wire_columns.fill_columns(batch.columns, [make(id="a", reward_parts=[]), make(id="b")])
    cols = batch.columns
    for name in ("worker_id", "prompt_key", "feedback_source", "rater"):
        cols.ClearField(name)
    for name in ("group_size", "feedback_latency_s"):
        setattr(cols, name, b"")
    _, out = wire_columns.trajectories_from_columns(cols, 10)
    assert [t.reward_parts for t in out] == [[], [RewardPart("like", 1.0, 1.0)]]
    assert all(
        (t.worker_id, t.group_size, t.rater, t.feedback_latency_s) == ("", 1, "", 0.0) for t in out
    )
    for name in (
        "reward_part_counts",
        "reward_part_name",
        "reward_part_value",
        "reward_part_weight",
    ):
        cols.ClearField(name)
    _, out = wire_columns.trajectories_from_columns(cols, 10)
    assert [t.reward_parts for t in out] == [[], []]


BAD_ROWS = [
    ({"id": ""}, "id"),
    ({"id": "x" * (wire.MAX_ID_LEN + 1)}, "id"),
    ({"group_id": ""}, "group_id"),
    ({"prompt_ids": []}, "prompt_ids"),
    ({"completion_ids": [], "behavior_logprobs": []}, "completion_ids"),
    ({"behavior_logprobs": [-0.5]}, "behavior_logprobs"),
    ({"behavior_logprobs": [-0.5, -0.1, -0.2]}, "behavior_logprobs"),
    ({"behavior_logprobs": [-0.5, float("nan")]}, "behavior_logprobs"),
    ({"behavior_logprobs": [float("-inf"), -0.5]}, "behavior_logprobs"),
    ({"behavior_logprobs": [-0.5, 3.0]}, "behavior_logprobs"),
    ({"completion_ids": [4, 10]}, "completion_ids"),
    ({"completion_ids": [-1, 4]}, "completion_ids"),
    ({"prompt_ids": [1, 2, 99]}, "prompt_ids"),
    ({"prompt_ids": [-7, 2, 3]}, "prompt_ids"),
    ({"reward": float("inf")}, "reward"),
    ({"reward": float("nan")}, "reward"),
    ({"reward_parts": [RewardPart("x", float("nan"))]}, "reward_parts"),
    ({"reward_parts": [RewardPart("x", 1.0, float("inf"))]}, "reward_parts"),
    ({"feedback_latency_s": float("nan")}, "feedback.latency_s"),
    ({"policy_version": -1}, "policy_version"),
    ({"group_size": -2}, "group_size"),
]


@pytest.mark.parametrize("changes, field", BAD_ROWS)
def test_a_bad_row_is_rejected_alone_naming_its_field_as_the_row_form_does(changes, field):
    trajs = [make(id="before"), make(**changes), make(id="after", completion_ids=[7, 8])]
    _, out = over_the_wire(trajs, vocab_size=10)
    assert isinstance(out[1], InvalidInput) and out[1].field == field
    row = wire.trajectories_from_protos([wire.trajectory_to_proto(trajs[1])], 10)[0]
    assert str(out[1]) == str(row)  # the very reason the row form gives
    assert [out[0].id, out[2].id] == ["before", "after"]
    assert out[2].completion_ids.tolist() == [7, 8]  # the rows after it still line up


def test_mixed_batch_keeps_every_good_row_exact():
    good = varied(12)
    rng = random.Random(1)
    trajs = list(good)
    bad_at = {}
    for changes, field in rng.sample(BAD_ROWS, 6):
        at = rng.randrange(len(trajs) + 1)
        trajs.insert(at, make(**{"id": f"bad-{field}-{at}", **changes}))
    for i, t in enumerate(trajs):
        if t.id.startswith("bad-") or not t.id:
            bad_at[i] = t
    ids, out = over_the_wire(trajs, vocab_size=10)
    assert len(out) == len(trajs) == len(ids)
    rows = wire.trajectories_from_protos([wire.trajectory_to_proto(t) for t in good], 10)
    expected = {r.id: fields(r) for r in rows}  # what the row form decodes them to
    for i, o in enumerate(out):
        if i in bad_at:
            assert isinstance(o, InvalidInput)
        else:
            assert fields(o) == expected[o.id]


def test_max_tokens_is_checked_from_the_lengths_before_any_token():
    long_completion = make(id="long", completion_ids=[1] * 9, behavior_logprobs=[-0.1] * 9)
    long_prompt = make(id="prompt", prompt_ids=[1] * 11)
    fits = make(id="fits", prompt_ids=[1] * 3, completion_ids=[1] * 7, behavior_logprobs=[-0.1] * 7)
    # a too-long row with bad tokens too: its verdict is the length, from the lengths alone
    long_bad = make(id="long-bad", prompt_ids=[99] * 12)
    _, out = over_the_wire(
        [long_completion, long_prompt, fits, long_bad], vocab_size=10, max_tokens=10
    )
    assert str(out[0]) == (
        "completion_ids: 9 tokens (+ 3 prompt tokens) > learner.max_trajectory_tokens=10"
    )
    assert str(out[1]) == "prompt_ids: 11 tokens > learner.max_trajectory_tokens=10"
    assert isinstance(out[2], Trajectory) and out[2].num_tokens == 10
    assert str(out[3]) == "prompt_ids: 12 tokens > learner.max_trajectory_tokens=10"


def test_rows_past_the_limit_are_not_decoded():
    trajs = varied(5)
    ids, out = over_the_wire(trajs, vocab_size=10, limit=3)
    assert ids == [t.id for t in trajs] and [t.id for t in out] == ["t0", "t1", "t2"]
    # a bad row past the limit does not matter: it is never read
    bad = [*varied(2), make(id="bad", completion_ids=[4, 99])]
    assert all(isinstance(o, Trajectory) for o in over_the_wire(bad, vocab_size=10, limit=2)[1])
    assert over_the_wire(bad, vocab_size=10, limit=0) == (["t0", "t1", "bad"], [])


def columns_of(trajs):
    batch = trajectory_pb2.TrajectoryBatch()
    wire_columns.fill_columns(batch.columns, trajs)
    return batch.columns


@pytest.mark.parametrize(
    "field, change",
    [
        ("group_id", lambda c: c.group_id.pop()),
        ("prompt_lens", lambda c: setattr(c, "prompt_lens", c.prompt_lens[:-4])),
        ("completion_lens", lambda c: setattr(c, "completion_lens", c.completion_lens + b"\0")),
        ("logprob_lens", lambda c: setattr(c, "logprob_lens", b"")),
        ("reward", lambda c: setattr(c, "reward", c.reward[:4])),
        ("policy_version", lambda c: setattr(c, "policy_version", c.policy_version[:-1])),
        ("group_size", lambda c: setattr(c, "group_size", c.group_size[:4])),
        ("worker_id", lambda c: c.worker_id.append("extra")),
        ("rater", lambda c: c.rater.pop()),
        ("feedback_latency_s", lambda c: setattr(c, "feedback_latency_s", b"\0" * 4)),
        ("prompt_ids", lambda c: setattr(c, "prompt_ids", c.prompt_ids[:-4])),
        ("completion_ids", lambda c: setattr(c, "completion_ids", c.completion_ids + b"\0" * 4)),
        ("behavior_logprobs", lambda c: setattr(c, "behavior_logprobs", c.behavior_logprobs[:-2])),
        ("reward_part_name", lambda c: c.reward_part_name.append("x")),
        ("reward_part_value", lambda c: setattr(c, "reward_part_value", b"")),
        ("reward_part_weight", lambda c: setattr(c, "reward_part_weight", b"\0" * 3)),
    ],
)
def test_a_column_of_the_wrong_shape_rejects_every_row_naming_the_column(field, change):
    cols = columns_of(varied(3))
    change(cols)
    ids, out = wire_columns.trajectories_from_columns(cols, 10)
    assert ids == ["t0", "t1", "t2"] and len(out) == 3
    assert all(isinstance(o, InvalidInput) and o.field == f"columns.{field}" for o in out)


def test_random_bytes_in_any_column_never_raise_anything_but_a_verdict():
    rng = random.Random(0)
    names = [
        "prompt_lens",
        "completion_lens",
        "logprob_lens",
        "prompt_ids",
        "completion_ids",
        "behavior_logprobs",
        "reward",
        "policy_version",
        "group_size",
        "reward_part_counts",
        "reward_part_value",
        "reward_part_weight",
        "feedback_latency_s",
    ]
    verdicts = []
    for _ in range(300):
        cols = columns_of(varied(4))
        for name in rng.sample(names, rng.choice([1, 1, 2])):
            blob = bytearray(getattr(cols, name))
            if blob and rng.random() < 0.7:  # same size, random values
                blob[rng.randrange(len(blob))] = rng.randrange(256)
            else:
                blob = rng.randbytes(rng.choice([0, 3, 4, 16]))
            setattr(cols, name, bytes(blob))
        _, out = wire_columns.trajectories_from_columns(cols, vocab_size=10, max_tokens=64)
        verdicts.extend(out)
    assert all(isinstance(o, Trajectory | InvalidInput) for o in verdicts)
    assert any(isinstance(o, Trajectory) for o in verdicts)
    assert any(isinstance(o, InvalidInput) for o in verdicts)
    for o in verdicts:
        if isinstance(o, Trajectory):  # what passed really is valid
            assert len(o.behavior_logprobs) == len(o.completion_ids) > 0 < len(o.prompt_ids)
            assert o.completion_ids.min() >= 0 and o.completion_ids.max() < 10
            assert np.isfinite(o.behavior_logprobs).all() and np.isfinite(o.reward)
            assert o.behavior_logprobs.max() <= wire.LOGPROB_MAX and o.num_tokens <= 64


def test_accepted_ids_reads_an_accepted_rest_ack():
    sent = [make(id=i) for i in ("a", "b", "c", "a", "", "x" * 300, "d")]
    ack = trajectory_pb2.Ack(batch_seq=1, accepted_rest=True, duplicate=["a"])
    ack.rejected.add(id="c", reason="reward: must be finite")
    ack.rejected.add(id="", reason="id: must be 1..256 characters")
    ack.rejected.add(id="", reason="id: must be 1..256 characters")
    # "a" is named once: one of its two rows was accepted; bad ids are never accepted
    assert wire_columns.accepted_ids(ack, sent) == ["b", "a", "d"]
    clean = trajectory_pb2.Ack(batch_seq=2, accepted_rest=True)
    assert wire_columns.accepted_ids(clean, sent[:3]) == ["a", "b", "c"]


def test_empty_batch():
    assert wire_columns.trajectories_from_columns(columns_of([]), 10) == ([], [])
