"""The worker's half of the column form (`rewardloop.wire_columns`): list[Trajectory] ->
`TrajectoryColumns`, and the column dtypes both halves share.

Encoding is what a rollout worker pays per batch on top of gRPC's own cost, so each field of
all rows is read in one C-level pass and each column is built with one call; the bytes are
exactly those of the plain per-field encoding (`tests/unit/test_wire_columns_encode.py` compares).
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Sequence
from operator import attrgetter

import numpy as np

from rewardloop.pb import trajectory_pb2
from rewardloop.trajectory import Trajectory
from rewardloop.wire import IDS_DTYPE, LITTLE_ENDIAN_HOST, LOGPROBS_DTYPE

LEN_DTYPE = np.dtype("<u4")  # prompt_lens, completion_lens, reward_part_counts
REWARD_DTYPE = np.dtype("<f4")  # reward, reward_part_value, reward_part_weight
VERSION_DTYPE = np.dtype("<i8")  # policy_version
GROUP_SIZE_DTYPE = np.dtype("<i4")
LATENCY_DTYPE = np.dtype("<f8")


def batch_to_columns(batch_seq: int, trajs: Sequence[Trajectory]) -> trajectory_pb2.TrajectoryBatch:
    """One TrajectoryBatch in the column form (what `TrajectoryClient` sends)."""
    batch = trajectory_pb2.TrajectoryBatch(batch_seq=batch_seq)
    fill_columns(batch.columns, trajs)
    return batch


def fill_columns(cols: trajectory_pb2.TrajectoryColumns, trajs: Sequence[Trajectory]) -> None:
    """Encode `trajs` into the empty `cols`: one C-level pass reads every field of every row
    (`attrgetter` + `zip`), each column is then one `extend`, `struct.pack` or `bytes.join`.

    The token arrays are joined as raw bytes (one copy; `np.concatenate` + `tobytes()` made
    two) when they are the little-endian int32 / float32 arrays `Trajectory` holds, which the
    joined size confirms; anything else goes through numpy's conversion as before."""
    n = len(trajs)
    if n == 0:
        return
    (ids, gids, prompts, comps, lps, reward, version, wid, gsize, pkey, parts, src, lat, rater) = (
        zip(*map(_FIELDS, trajs), strict=True)
    )
    lens = struct.Struct(f"<{n}I").pack
    prompt_lens, comp_lens, lp_lens = map(len, prompts), map(len, comps), map(len, lps)
    cols.id.extend(ids)
    cols.group_id.extend(gids)
    cols.prompt_lens = lens(*prompt_lens)
    cols.completion_lens = lens(*comp_lens)
    cols.prompt_ids = _joined(prompts, IDS_DTYPE)
    cols.completion_ids = _joined(comps, IDS_DTYPE)
    cols.logprob_lens = lens(*lp_lens)
    cols.behavior_logprobs = _joined(lps, LOGPROBS_DTYPE)
    cols.reward = _floats(reward, "f", REWARD_DTYPE)
    cols.policy_version = np.array(version, VERSION_DTYPE).tobytes()
    cols.group_size = np.array(gsize, GROUP_SIZE_DTYPE).tobytes()
    cols.worker_id.extend(wid)
    cols.prompt_key.extend(pkey)
    if any(parts):
        flat = [p for ps in parts for p in ps]
        cols.reward_part_counts = lens(*map(len, parts))
        cols.reward_part_name.extend([p.name for p in flat])
        cols.reward_part_value = _floats([p.value for p in flat], "f", REWARD_DTYPE)
        cols.reward_part_weight = _floats([p.weight for p in flat], "f", REWARD_DTYPE)
    cols.feedback_source.extend(src)
    cols.feedback_latency_s = _floats(lat, "d", LATENCY_DTYPE)
    cols.rater.extend(rater)


_FIELDS = attrgetter(
    "id", "group_id", "prompt_ids", "completion_ids", "behavior_logprobs", "reward",
    "policy_version", "worker_id", "group_size", "prompt_key", "reward_parts",
    "feedback_source", "feedback_latency_s", "rater",
)  # fmt: skip


def _joined(arrays: Sequence, dtype: np.dtype) -> bytes:
    """The arrays' values back to back in `dtype`: their raw bytes when they already are that
    (contiguous, 4-byte items: the joined size says so), else numpy's conversion."""
    if LITTLE_ENDIAN_HOST and all(getattr(a, "dtype", None) == dtype for a in arrays):
        try:
            out = b"".join(arrays)
        except TypeError:  # not all contiguous buffers (a strided view)
            pass
        else:
            if len(out) == dtype.itemsize * sum(map(len, arrays)):  # 1-D, as Trajectory's
                return out
    return np.concatenate(arrays, dtype=dtype).tobytes()


def _floats(values: Sequence, code: str, dtype: np.dtype) -> bytes:
    """Floats as packed `dtype` (`array` is a C loop; out-of-range values become inf, as in
    numpy, without its warning)."""
    if LITTLE_ENDIAN_HOST:
        try:
            return array(code, values).tobytes()
        except TypeError:  # e.g. a value numpy converts but `array` does not
            pass
    return np.array(values, dtype).tobytes()
