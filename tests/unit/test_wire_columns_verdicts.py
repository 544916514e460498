"""The column form's whole-batch checks give every row the verdict the row form gives it alone.

`wire_columns.trajectories_from_columns` first checks each column at once (all lengths, all
finiteness, version and group-size bounds, the token ranges of the whole batch) and goes row
by row only when that finds a problem. Hypothesis builds batches of 1-8 trajectories, damages
any number of rows in any number of ways (several damages in one row: the row form names the
first in its order), and picks a credit limit and a token bound; each row's verdict must be
exactly what the row form (`wire.trajectories_from_protos`, one row at a time) says: the same
field and reason for a bad row, the same trajectory for a good one. A row's verdict must not
depend on the rows next to it.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rewardloop import wire, wire_columns
from rewardloop.errors import InvalidInput
from rewardloop.pb import trajectory_pb2
from rewardloop.trajectory import RewardPart, Trajectory

VOCAB = 50
NAN, INF = float("nan"), float("inf")

# damage name -> the change to a valid row's fields (applied in order; later ones win)
DAMAGES = {
    "empty_id": {"id": ""},
    "long_id": {"id": "x" * (wire.MAX_ID_LEN + 1)},
    "empty_group": {"group_id": ""},
    "empty_prompt": {"prompt_ids": []},
    "empty_completion": {"completion_ids": [], "behavior_logprobs": []},
    "short_logprobs": {"behavior_logprobs": [-0.5]},
    "nan_logprob": {"behavior_logprobs": [-0.5, NAN]},
    "neg_inf_logprob": {"behavior_logprobs": [-INF, -0.5]},
    "positive_logprob": {"behavior_logprobs": [-0.5, 3.0]},
    "token_over_vocab": {"completion_ids": [4, VOCAB]},
    "negative_token": {"prompt_ids": [-1, 2, 3]},
    "nan_reward": {"reward": NAN},
    "inf_reward": {"reward": -INF},
    "nan_part": {"reward_parts": [RewardPart("p", NAN)]},
    "inf_part_weight": {"reward_parts": [RewardPart("p", 1.0, INF)]},
    "nan_latency": {"feedback_latency_s": NAN},
    "negative_version": {"policy_version": -3},
    "negative_group_size": {"group_size": -1},
    "long_prompt": {"prompt_ids": list(range(1, 21))},
    "long_completion": {"completion_ids": [3] * 20, "behavior_logprobs": [-0.25] * 20},
}


def row(i: int, damages: list[str], n_parts: int) -> Trajectory:
    fields = dict(
        id=f"t{i}",
        group_id=f"g{i // 2}",
        prompt_ids=[1, 2, 3],
        completion_ids=[4, 5],
        behavior_logprobs=[-0.5, -1.25],
        reward=0.25 * i,
        policy_version=i,
        worker_id="w",
        group_size=2,
        prompt_key=f"k{i}",
        reward_parts=[RewardPart(f"p{j}", 0.5, 1.0) for j in range(n_parts)],
        feedback_source="persona",
        feedback_latency_s=0.5,
        rater="r",
    )
    for name in damages:
        fields.update(DAMAGES[name])
    return Trajectory(**fields)


def comparable(v: Trajectory | InvalidInput):
    if isinstance(v, InvalidInput):
        return ("rejected", v.field, str(v))
    out = {k: x.tolist() if isinstance(x, np.ndarray) else x for k, x in vars(v).items()}
    return ("ok", sorted(out.items(), key=lambda kv: kv[0]).__repr__())


rows = st.tuples(
    st.lists(st.sampled_from(sorted(DAMAGES)), max_size=3), st.integers(min_value=0, max_value=2)
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(rows, min_size=1, max_size=8),
    st.one_of(st.none(), st.integers(min_value=0, max_value=9)),
    st.sampled_from([None, 16]),
)
def test_every_row_gets_the_row_forms_verdict_whatever_its_batch(spec, limit, max_tokens):
    trajs = [row(i, damages, parts) for i, (damages, parts) in enumerate(spec)]
    blob = wire_columns.batch_to_columns(1, trajs).SerializeToString()
    cols = trajectory_pb2.TrajectoryBatch.FromString(blob).columns
    ids, verdicts = wire_columns.trajectories_from_columns(cols, VOCAB, max_tokens, limit=limit)
    assert ids == [t.id for t in trajs]
    m = len(trajs) if limit is None else min(limit, len(trajs))
    assert len(verdicts) == m  # rows past the credit limit get no verdict at all
    for t, got in zip(trajs, verdicts, strict=False):
        alone = wire.trajectories_from_protos([wire.trajectory_to_proto(t)], VOCAB, max_tokens)[0]
        assert comparable(got) == comparable(alone), t.id
