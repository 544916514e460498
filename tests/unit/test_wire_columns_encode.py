"""The column encoder (`rewardloop.wire_columns_encode`) writes exactly the bytes of the plain
per-field numpy encoding, whatever arrays a Trajectory holds: its own int32 / float32 arrays
(joined raw), and anything numpy must convert (strided views, other dtypes, out-of-range
floats), which takes the slow path instead of being joined as raw bytes."""

import numpy as np
from test_wire_columns import varied

from rewardloop import wire_columns_encode as enc
from rewardloop.pb import trajectory_pb2
from rewardloop.wire import IDS_DTYPE, LOGPROBS_DTYPE


def reference(trajs) -> bytes:
    """The straightforward encoding: one list per field, numpy for every packed column."""
    batch = trajectory_pb2.TrajectoryBatch(batch_seq=7)
    c = batch.columns
    c.id.extend([t.id for t in trajs])
    c.group_id.extend([t.group_id for t in trajs])
    c.prompt_lens = np.array([len(t.prompt_ids) for t in trajs], enc.LEN_DTYPE).tobytes()
    c.completion_lens = np.array([len(t.completion_ids) for t in trajs], enc.LEN_DTYPE).tobytes()
    c.prompt_ids = np.concatenate([t.prompt_ids for t in trajs], dtype=IDS_DTYPE).tobytes()
    c.completion_ids = np.concatenate([t.completion_ids for t in trajs], dtype=IDS_DTYPE).tobytes()
    lps = [t.behavior_logprobs for t in trajs]
    c.logprob_lens = np.array([len(x) for x in lps], enc.LEN_DTYPE).tobytes()
    c.behavior_logprobs = np.concatenate(lps, dtype=LOGPROBS_DTYPE).tobytes()
    c.reward = np.array([t.reward for t in trajs], enc.REWARD_DTYPE).tobytes()
    c.policy_version = np.array([t.policy_version for t in trajs], enc.VERSION_DTYPE).tobytes()
    c.group_size = np.array([t.group_size for t in trajs], enc.GROUP_SIZE_DTYPE).tobytes()
    c.worker_id.extend([t.worker_id for t in trajs])
    c.prompt_key.extend([t.prompt_key for t in trajs])
    parts = [p for t in trajs for p in t.reward_parts]
    if parts:
        counts = [len(t.reward_parts) for t in trajs]
        c.reward_part_counts = np.array(counts, enc.LEN_DTYPE).tobytes()
        c.reward_part_name.extend([p.name for p in parts])
        c.reward_part_value = np.array([p.value for p in parts], enc.REWARD_DTYPE).tobytes()
        c.reward_part_weight = np.array([p.weight for p in parts], enc.REWARD_DTYPE).tobytes()
    c.feedback_source.extend([t.feedback_source for t in trajs])
    latency = np.array([t.feedback_latency_s for t in trajs], enc.LATENCY_DTYPE)
    c.feedback_latency_s = latency.tobytes()
    c.rater.extend([t.rater for t in trajs])
    return batch.SerializeToString()


def encoded(trajs) -> bytes:
    return enc.batch_to_columns(7, trajs).SerializeToString()


def test_same_bytes_as_the_plain_encoding():
    for k in (1, 2, 5, 24):
        trajs = varied(k)
        assert encoded(trajs) == reference(trajs)


def test_arrays_numpy_must_convert_take_the_slow_path_with_the_same_bytes():
    trajs = varied(6)
    wide = np.arange(40, dtype=np.int64)
    trajs[0].prompt_ids = wide[::2]  # a strided view: no raw buffer to join
    trajs[1].completion_ids = wide[:3]  # int64: raw bytes would be 8 per id
    trajs[1].behavior_logprobs = np.array([-0.5, -1.0, -2.0], np.float64)
    trajs[2].prompt_ids = np.array([1, 2], np.uint32)  # 4-byte items, but not int32
    trajs[3].reward = 1e40  # beyond float32: inf, as numpy makes it
    trajs[4].feedback_latency_s = np.float32(0.25)
    assert encoded(trajs) == reference(trajs)
