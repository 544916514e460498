"""Wire conversion of a whole batch in columns: list[Trajectory] <-> `TrajectoryColumns`.

Why columns: in the row form (`rewardloop.wire`) every trajectory is a sub-message of 14 fields,
so both ends pay per trajectory for building, serializing, parsing and reading it, and that
Python cost (about 3x a bare gRPC-Python message at 24 trajectories a batch) bounded ingest.
Here a batch is one message of ~20 fields whatever its size: each field of all rows in one
column (packed little-endian numbers, or one repeated string), the token arrays of all rows
concatenated with their lengths in a column. The client encodes a batch with one call per
column (`wire_columns_encode.py`); the learner checks every column's shape,
then each row's scalars and lengths as whole-column numpy comparisons, then the token ids and
log-probs of the batch with one min/max pass each, and builds each Trajectory from views of the
received bytes (no per-token Python objects, no copies).

Validation is the row form's, row by row: a bad trajectory becomes an `InvalidInput` naming its
field (the first problem, in the row form's order) and the rest of the batch is unaffected. A
row longer than `max_tokens` (`learner.max_trajectory_tokens`) is rejected from its lengths
column before any token is read. Only a column whose shape contradicts the batch (a wrong
number of values; lengths that do not add up to the arrays) cannot be blamed on one row: then
every row gets that rejection, naming the column (`columns.<field>`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from itertools import accumulate
from operator import add

import numpy as np

from rewardloop.errors import InvalidInput
from rewardloop.pb import trajectory_pb2
from rewardloop.trajectory import RewardPart, Trajectory
from rewardloop.wire import (
    IDS_DTYPE,
    LITTLE_ENDIAN_HOST,
    LOGPROBS_DTYPE,
    MAX_ID_LEN,
    MAX_TOKENS_KEY,
    array_problem,
    ids_ok,
    logprobs_ok,
)
from rewardloop.wire_columns_encode import (  # noqa: F401 - the encoder, re-exported
    GROUP_SIZE_DTYPE,
    LATENCY_DTYPE,
    LEN_DTYPE,
    REWARD_DTYPE,
    VERSION_DTYPE,
    batch_to_columns,
    fill_columns,
)

_new = object.__new__


# ---- the worker's Ack -------------------------------------------------------------------


def accepted_ids(ack: trajectory_pb2.Ack, sent: Sequence[Trajectory]) -> list[str]:
    """The ids an Ack with `accepted_rest` accepted: the rows of `sent` it does not name.

    An id named k times (duplicate or rejected) accounts for k rows with that id, so a batch
    that repeats an id still has one of them accepted; a row with an id outside 1..MAX_ID_LEN
    characters was rejected with an empty id (trajectory.proto) and is never accepted.
    """
    if not ack.duplicate and not ack.rejected:
        return [t.id for t in sent if 0 < len(t.id) <= MAX_ID_LEN]
    named = Counter(ack.duplicate)
    named.update(r.id for r in ack.rejected)
    out = []
    for t in sent:
        if not 0 < len(t.id) <= MAX_ID_LEN:
            continue
        if named[t.id]:
            named[t.id] -= 1
        else:
            out.append(t.id)
    return out


# ---- decode (the learner) --------------------------------------------------------------


def trajectories_from_columns(
    cols: trajectory_pb2.TrajectoryColumns,
    vocab_size: int | None = None,
    max_tokens: int | None = None,
    limit: int | None = None,
) -> tuple[list[str], list[Trajectory | InvalidInput]]:
    """Decode and validate the first `limit` rows (None = all): (every row's id, verdicts).

    The verdicts are one Trajectory, or the InvalidInput that rejects it, per decoded row;
    rows past `limit` (beyond the stream's credits) are not read at all.
    """
    ids = list(cols.id)
    n = len(ids)
    m = n if limit is None else max(0, min(limit, n))
    if m == 0:
        return ids, []
    shape = _size_problem(cols, n)
    if shape is None:
        c = _Columns(cols, ids, n)
        shape = _sum_problem(cols, c)
    if shape is not None:
        return ids, [shape] * m
    c.read_arrays(cols)
    problems = _row_problems(c, m, max_tokens)
    if not problems and (
        ids_ok(c.prompt_ids[: c.p_off[m]], vocab_size)
        and ids_ok(c.completion_ids[: c.c_off[m]], vocab_size)
        and logprobs_ok(c.logprobs[: c.l_off[m]])
    ):
        return ids, _trajectories(c, range(m))
    for i in range(m):  # some row is bad: check each of the others on its own
        if i not in problems:
            problem = array_problem(
                c.prompt_ids[c.p_off[i] : c.p_off[i + 1]],
                c.completion_ids[c.c_off[i] : c.c_off[i + 1]],
                c.logprobs[c.l_off[i] : c.l_off[i + 1]],
                vocab_size,
            )
            if problem is not None:
                problems[i] = problem
    good = iter(_trajectories(c, [i for i in range(m) if i not in problems]))
    return ids, [problems[i] if i in problems else next(good) for i in range(m)]


_FIXED_COLUMNS = (  # (field, dtype, optional)
    ("prompt_lens", LEN_DTYPE, False),
    ("completion_lens", LEN_DTYPE, False),
    ("logprob_lens", LEN_DTYPE, False),
    ("reward", REWARD_DTYPE, False),
    ("policy_version", VERSION_DTYPE, False),
    ("group_size", GROUP_SIZE_DTYPE, True),
    ("reward_part_counts", LEN_DTYPE, True),
    ("feedback_latency_s", LATENCY_DTYPE, True),
)
_STRING_COLUMNS = (  # (field, optional); `id` defines n
    ("group_id", False),
    ("worker_id", True),
    ("prompt_key", True),
    ("feedback_source", True),
    ("rater", True),
)


def _size_problem(cols: trajectory_pb2.TrajectoryColumns, n: int) -> InvalidInput | None:
    """A per-row column without one value per row: no row can be blamed, all are rejected."""
    for name, dtype, optional in _FIXED_COLUMNS:
        size = len(getattr(cols, name))
        if size != n * dtype.itemsize and not (optional and size == 0):
            want = f"{n} x {dtype.itemsize} = {n * dtype.itemsize} bytes"
            return InvalidInput(
                f"columns.{name}",
                f"{size} bytes, needs one value per row: {want}{' or none' if optional else ''}",
            )
    for name, optional in _STRING_COLUMNS:
        size = len(getattr(cols, name))
        if size != n and not (optional and size == 0):
            return InvalidInput(
                f"columns.{name}",
                f"{size} values, needs one per row: {n}{' or none' if optional else ''}",
            )
    return None


def _sum_problem(cols: trajectory_pb2.TrajectoryColumns, c: _Columns) -> InvalidInput | None:
    """Concatenated columns whose size is not what the lengths columns add up to."""
    for name, lens, values in (
        ("prompt_ids", "prompt_lens", c.p_off[-1]),
        ("completion_ids", "completion_lens", c.c_off[-1]),
        ("behavior_logprobs", "logprob_lens", c.l_off[-1]),
    ):
        size = len(getattr(cols, name))
        if size != values * 4:
            return InvalidInput(
                f"columns.{name}",
                f"{size} bytes, but columns.{lens} add up to {values} values = {values * 4} bytes",
            )
    n_parts = c.part_off[-1] if c.part_off is not None else 0
    for name, size in (
        ("reward_part_name", len(cols.reward_part_name)),
        ("reward_part_value", len(cols.reward_part_value) // 4),
        ("reward_part_weight", len(cols.reward_part_weight) // 4),
    ):
        if size != n_parts or (name != "reward_part_name" and len(getattr(cols, name)) % 4):
            return InvalidInput(
                f"columns.{name}",
                f"{len(getattr(cols, name))} {'values' if name == 'reward_part_name' else 'bytes'}"
                f", but columns.reward_part_counts add up to {n_parts} parts",
            )
    return None


def _values(data: bytes, code: str) -> list:
    """A packed little-endian column as a list of Python numbers: a `memoryview` cast on a
    little-endian host (half numpy's cost for a few dozen values), else numpy."""
    if LITTLE_ENDIAN_HOST:
        return memoryview(data).cast(code).tolist()
    return np.frombuffer(data, np.dtype(code).newbyteorder("<")).tolist()


class _Columns:
    """A batch's columns once their sizes are right: per-row values as Python lists (cheaper
    than numpy for a few dozen rows), the token arrays as numpy views of the received bytes."""

    def __init__(self, cols: trajectory_pb2.TrajectoryColumns, ids: list[str], n: int):
        self.ids = ids
        self.group_ids = list(cols.group_id)
        self.prompt_lens = _values(cols.prompt_lens, "I")
        self.completion_lens = _values(cols.completion_lens, "I")
        self.p_off = list(accumulate(self.prompt_lens, initial=0))
        self.c_off = list(accumulate(self.completion_lens, initial=0))
        self.logprob_lens = _values(cols.logprob_lens, "I")
        self.l_off = list(accumulate(self.logprob_lens, initial=0))
        self.reward = _values(cols.reward, "f")
        self.policy_version = _values(cols.policy_version, "q")
        gs = cols.group_size
        self.group_size = _values(gs, "i") if gs else [0] * n
        self.worker_id = list(cols.worker_id) or [""] * n
        self.prompt_key = list(cols.prompt_key) or [""] * n
        self.feedback_source = list(cols.feedback_source) or [""] * n
        self.rater = list(cols.rater) or [""] * n
        lat = cols.feedback_latency_s
        self.latency = _values(lat, "d") if lat else [0.0] * n
        counts = cols.reward_part_counts
        self.part_off = None
        if counts:
            self.part_off = list(accumulate(_values(counts, "I"), initial=0))

    def read_arrays(self, cols: trajectory_pb2.TrajectoryColumns) -> None:
        """The concatenated columns, once `_sum_problem` found their sizes right."""
        self.prompt_ids = np.frombuffer(cols.prompt_ids, IDS_DTYPE)
        self.completion_ids = np.frombuffer(cols.completion_ids, IDS_DTYPE)
        self.logprobs = np.frombuffer(cols.behavior_logprobs, LOGPROBS_DTYPE)
        if self.part_off is not None:
            self.part_name = list(cols.reward_part_name)
            self.part_value = _values(cols.reward_part_value, "f")
            self.part_weight = _values(cols.reward_part_weight, "f")


def _row_problems(c: _Columns, m: int, max_tokens: int | None) -> dict[int, InvalidInput]:
    """Each bad row's first problem among rows < m, in the row form's order. Whole-column
    min/max first (all rows good is the common case), row by row only when one fails."""
    ids, pl, cl = c.ids[:m], c.prompt_lens[:m], c.completion_lens[:m]
    reward, version, gs = c.reward[:m], c.policy_version[:m], c.group_size[:m]
    id_lens = list(map(len, ids))
    if (
        min(id_lens) > 0
        and max(id_lens) <= MAX_ID_LEN
        and all(c.group_ids[:m])
        and min(pl) > 0
        and min(cl) > 0
        and c.logprob_lens[:m] == cl
        and all(map(math.isfinite, reward))
        and _parts_finite(c, m)
        and all(map(math.isfinite, c.latency[:m]))
        and min(version) >= 0
        and min(gs) >= 0
        and (max_tokens is None or max(map(add, pl, cl)) <= max_tokens)
    ):
        return {}
    problems: dict[int, InvalidInput] = {}
    for i in range(m):
        if not 0 < id_lens[i] <= MAX_ID_LEN:
            problem = InvalidInput("id", f"must be 1..{MAX_ID_LEN} characters")
        elif not c.group_ids[i]:
            problem = InvalidInput("group_id", "must not be empty")
        elif not pl[i]:
            problem = InvalidInput("prompt_ids", "must hold at least one token")
        elif not cl[i]:
            problem = InvalidInput("completion_ids", "must hold at least one token")
        elif c.logprob_lens[i] != cl[i]:
            problem = InvalidInput(
                "behavior_logprobs",
                f"needs one float32 per completion token ({cl[i]} = {4 * cl[i]} bytes), "
                f"got {4 * c.logprob_lens[i]} bytes",
            )
        elif not math.isfinite(reward[i]):
            problem = InvalidInput("reward", f"must be finite, got {reward[i]}")
        elif (part := _bad_part(c, i)) is not None:
            problem = InvalidInput(
                "reward_parts",
                f"{c.part_name[part]!r}: value {c.part_value[part]} and weight "
                f"{c.part_weight[part]} must be finite",
            )
        elif not math.isfinite(c.latency[i]):
            problem = InvalidInput("feedback.latency_s", f"must be finite, got {c.latency[i]}")
        elif version[i] < 0:
            problem = InvalidInput("policy_version", f"must be >= 0, got {version[i]}")
        elif gs[i] < 0:
            problem = InvalidInput("group_size", f"must be >= 0, got {gs[i]}")
        elif max_tokens is not None and pl[i] > max_tokens:
            problem = InvalidInput("prompt_ids", f"{pl[i]} tokens > {MAX_TOKENS_KEY}={max_tokens}")
        elif max_tokens is not None and pl[i] + cl[i] > max_tokens:
            problem = InvalidInput(
                "completion_ids",
                f"{cl[i]} tokens (+ {pl[i]} prompt tokens) > {MAX_TOKENS_KEY}={max_tokens}",
            )
        else:
            continue
        problems[i] = problem
    return problems


def _parts_finite(c: _Columns, m: int) -> bool:
    """Every reward part of rows < m has a finite value and weight (NaN would poison metrics)."""
    if c.part_off is None:
        return True
    k = c.part_off[m]
    return all(map(math.isfinite, c.part_value[:k])) and all(map(math.isfinite, c.part_weight[:k]))


def _bad_part(c: _Columns, i: int) -> int | None:
    """The index of row i's first reward part with a non-finite value or weight, if any."""
    if c.part_off is None:
        return None
    for k in range(c.part_off[i], c.part_off[i + 1]):
        if not (math.isfinite(c.part_value[k]) and math.isfinite(c.part_weight[k])):
            return k
    return None


def _trajectories(c: _Columns, rows) -> list[Trajectory]:
    """The given rows as Trajectories whose arrays are views of the received bytes.

    Built without `Trajectory.__init__`: its `__post_init__` only coerces the arrays to the
    right dtype, and these already are (read-only int32 / float32 views); skipping it halves
    the cost of the object, which is most of what the learner spends per trajectory.
    """
    prompt_ids, completion_ids, logprobs = c.prompt_ids, c.completion_ids, c.logprobs
    p_off, c_off, l_off, part_off = c.p_off, c.c_off, c.l_off, c.part_off
    if part_off is not None:
        all_parts = list(map(RewardPart, c.part_name, c.part_value, c.part_weight))
    out = []
    for i in rows:
        parts = [] if part_off is None else all_parts[part_off[i] : part_off[i + 1]]
        t = _new(Trajectory)
        t.__dict__ = {
            "id": c.ids[i],
            "group_id": c.group_ids[i],
            "prompt_ids": prompt_ids[p_off[i] : p_off[i + 1]],
            "completion_ids": completion_ids[c_off[i] : c_off[i + 1]],
            "behavior_logprobs": logprobs[l_off[i] : l_off[i + 1]],
            "reward": c.reward[i],
            "policy_version": c.policy_version[i],
            "worker_id": c.worker_id[i],
            "group_size": c.group_size[i] or 1,
            "prompt_key": c.prompt_key[i],
            "reward_parts": parts,
            "feedback_source": c.feedback_source[i],
            "feedback_latency_s": c.latency[i],
            "rater": c.rater[i],
        }
        out.append(t)
    return out
