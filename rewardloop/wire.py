"""Wire conversion: Trajectory <-> protobuf, the row form of a batch (one `Trajectory` message
each). Workers send the column form (`rewardloop.wire_columns`, which reuses the array checks
here); the learner still accepts this one. Weights travel through `rewardloop.weight_wire`.

Token ids and behavior log-probs travel as packed little-endian bytes (int32 / float32, see
trajectory.proto), so both ends convert a whole array with one numpy call. The learner decodes a
whole `TrajectoryBatch` at once (`trajectories_from_protos`): cheap per-trajectory checks of the
scalar fields and byte lengths, then one `b"".join` of the batch's arrays and one min/max pass
over all token ids and all log-probs. Only when that pass finds a bad value does it check each
trajectory alone, to reject exactly the bad ones. The decoded arrays are read-only views of the
joined bytes (no per-token Python objects anywhere).

Decoding validates: a malformed trajectory becomes an `InvalidInput` naming the field, which
the ingest server reports back as that trajectory's rejection instead of crashing. That
includes length: given `max_tokens` (the learner passes `learner.max_trajectory_tokens`), a
trajectory whose prompt + completion is longer is rejected from its byte lengths alone, before
any of its arrays is read.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Sequence

import numpy as np

from rewardloop.errors import InvalidInput
from rewardloop.pb import trajectory_pb2
from rewardloop.trajectory import RewardPart, Trajectory

MAX_ID_LEN = 256
MAX_TOKENS_KEY = "learner.max_trajectory_tokens"
"""The config key that sets `max_tokens`, named in the rejection."""
LOGPROB_MAX = 1e-4
"""Largest behavior log-prob accepted (log-probs are <= 0; this allows float rounding)."""
IDS_DTYPE = np.dtype("<i4")
LITTLE_ENDIAN_HOST = sys.byteorder == "little"
"""The wire's byte order is the host's: raw buffers can be joined / cast without a swap."""
_UIDS_DTYPE = np.dtype("<u4")
LOGPROBS_DTYPE = np.dtype("<f4")
_WIDTH = 4  # bytes per token id and per log-prob on the wire


def pack_ids(ids) -> bytes:
    """Token ids (list, array or CPU tensor) as int32 little-endian bytes."""
    return np.asarray(ids, dtype=IDS_DTYPE).tobytes()


def pack_logprobs(logprobs) -> bytes:
    """Log-probs (list, array or CPU tensor) as float32 little-endian bytes."""
    return np.asarray(logprobs, dtype=LOGPROBS_DTYPE).tobytes()


def trajectory_to_proto(t: Trajectory) -> trajectory_pb2.Trajectory:
    return fill_proto(trajectory_pb2.Trajectory(), t)


def batch_to_proto(batch_seq: int, trajs: Iterable[Trajectory]) -> trajectory_pb2.TrajectoryBatch:
    """One TrajectoryBatch, each trajectory encoded in place (no sub-message copies)."""
    batch = trajectory_pb2.TrajectoryBatch(batch_seq=batch_seq)
    add = batch.trajectories.add
    for t in trajs:
        fill_proto(add(), t)
    return batch


def fill_proto(msg: trajectory_pb2.Trajectory, t: Trajectory) -> trajectory_pb2.Trajectory:
    """Encode `t` into the empty message `msg` (in place: nested messages are not copied)."""
    msg.id = t.id
    msg.group_id = t.group_id
    msg.prompt_ids = pack_ids(t.prompt_ids)
    msg.completion_ids = pack_ids(t.completion_ids)
    msg.behavior_logprobs = pack_logprobs(t.behavior_logprobs)
    msg.reward = t.reward
    msg.policy_version = t.policy_version
    msg.worker_id = t.worker_id
    msg.group_size = t.group_size
    msg.prompt_key = t.prompt_key
    parts = msg.reward_parts
    for p in t.reward_parts:
        parts.add(name=p.name, value=p.value, weight=p.weight)
    feedback = msg.feedback
    feedback.source = t.feedback_source
    feedback.latency_s = t.feedback_latency_s
    feedback.rater = t.rater
    return msg


def trajectory_from_proto(
    msg: trajectory_pb2.Trajectory, vocab_size: int | None = None, max_tokens: int | None = None
) -> Trajectory:
    """Decode and validate one trajectory; raises InvalidInput naming the bad field."""
    (out,) = trajectories_from_protos([msg], vocab_size, max_tokens)
    if isinstance(out, InvalidInput):
        raise out
    return out


def trajectories_from_protos(
    msgs: Sequence[trajectory_pb2.Trajectory],
    vocab_size: int | None = None,
    max_tokens: int | None = None,
) -> list[Trajectory | InvalidInput]:
    """Decode and validate a batch: one Trajectory, or the InvalidInput that rejects it, per msg.

    A bad trajectory never affects the verdict on the others. `max_tokens` (None = no bound)
    bounds each trajectory's prompt + completion tokens.
    """
    out: list = []
    id_blobs: list[bytes] = []
    lp_blobs: list[bytes] = []
    for msg in msgs:
        prompt, completion, logprobs = msg.prompt_ids, msg.completion_ids, msg.behavior_logprobs
        problem = _scalar_problem(msg, prompt, completion, logprobs) or _length_problem(
            prompt, completion, max_tokens
        )
        if problem is not None:
            out.append(problem)
            continue
        id_blobs.append(prompt)
        id_blobs.append(completion)
        lp_blobs.append(logprobs)
        out.append((msg, len(prompt) // _WIDTH, len(completion) // _WIDTH))
    if not id_blobs:
        return out
    ids = np.frombuffer(b"".join(id_blobs), IDS_DTYPE)
    lps = np.frombuffer(b"".join(lp_blobs), LOGPROBS_DTYPE)
    all_ok = ids_ok(ids, vocab_size) and logprobs_ok(lps)
    i = j = 0
    for k, item in enumerate(out):
        if isinstance(item, InvalidInput):
            continue
        msg, n_prompt, n_completion = item
        prompt = ids[i : i + n_prompt]
        completion = ids[i + n_prompt : i + n_prompt + n_completion]
        logprobs = lps[j : j + n_completion]
        i += n_prompt + n_completion
        j += n_completion
        if not all_ok:  # something in the batch is bad: find out whether it is this one
            problem = array_problem(prompt, completion, logprobs, vocab_size)
            if problem is not None:
                out[k] = problem
                continue
        out[k] = _trajectory(msg, prompt, completion, logprobs)
    return out


def _scalar_problem(
    msg: trajectory_pb2.Trajectory, prompt: bytes, completion: bytes, logprobs: bytes
) -> InvalidInput | None:
    """Everything checkable without looking at the array values (cheap, per trajectory)."""
    if not msg.id or len(msg.id) > MAX_ID_LEN:
        return InvalidInput("id", f"must be 1..{MAX_ID_LEN} characters")
    if not msg.group_id:
        return InvalidInput("group_id", "must not be empty")
    for name, blob in (("prompt_ids", prompt), ("completion_ids", completion)):
        if not blob:
            return InvalidInput(name, "must hold at least one token")
        if len(blob) % _WIDTH:
            return InvalidInput(
                name, f"{len(blob)} bytes is not a whole number of int32 little-endian ids"
            )
    if len(logprobs) != len(completion):
        return InvalidInput(
            "behavior_logprobs",
            f"needs one float32 per completion token ({len(completion) // _WIDTH} = "
            f"{len(completion)} bytes), got {len(logprobs)} bytes",
        )
    if not math.isfinite(msg.reward):
        return InvalidInput("reward", f"must be finite, got {msg.reward}")
    for p in msg.reward_parts:  # NaN / inf here would poison the reward metrics
        if not (math.isfinite(p.value) and math.isfinite(p.weight)):
            return InvalidInput(
                "reward_parts", f"{p.name!r}: value {p.value} and weight {p.weight} must be finite"
            )
    if not math.isfinite(msg.feedback.latency_s):
        return InvalidInput("feedback.latency_s", f"must be finite, got {msg.feedback.latency_s}")
    if msg.policy_version < 0:
        return InvalidInput("policy_version", f"must be >= 0, got {msg.policy_version}")
    if msg.group_size < 0:
        return InvalidInput("group_size", f"must be >= 0, got {msg.group_size}")
    return None


def _length_problem(
    prompt: bytes, completion: bytes, max_tokens: int | None
) -> InvalidInput | None:
    """Prompt + completion longer than `max_tokens`, told from the byte lengths alone."""
    if max_tokens is None:
        return None
    n_prompt, n_completion = len(prompt) // _WIDTH, len(completion) // _WIDTH
    if n_prompt > max_tokens:
        return InvalidInput("prompt_ids", f"{n_prompt} tokens > {MAX_TOKENS_KEY}={max_tokens}")
    if n_prompt + n_completion > max_tokens:
        return InvalidInput(
            "completion_ids",
            f"{n_completion} tokens (+ {n_prompt} prompt tokens) > {MAX_TOKENS_KEY}={max_tokens}",
        )
    return None


def ids_ok(ids: np.ndarray, vocab_size: int | None) -> bool:
    """Every id in [0, vocab_size) (>= 0 without one): one pass, as unsigned (a negative
    int32 is then >= 2**31, above any vocabulary)."""
    if ids.dtype == IDS_DTYPE:
        return bool(ids.view(_UIDS_DTYPE).max() < (2**31 if vocab_size is None else vocab_size))
    return bool(ids.min() >= 0 and (vocab_size is None or ids.max() < vocab_size))


def logprobs_ok(lps: np.ndarray) -> bool:
    # min/max propagate NaN, so a NaN fails both comparisons; -inf fails the first.
    return bool(lps.min() > -np.inf and lps.max() <= LOGPROB_MAX)


def array_problem(
    prompt: np.ndarray, completion: np.ndarray, logprobs: np.ndarray, vocab_size: int | None
) -> InvalidInput | None:
    for name, ids in (("prompt_ids", prompt), ("completion_ids", completion)):
        if not ids_ok(ids, vocab_size):
            where = ">= 0" if vocab_size is None else f"in [0, {vocab_size})"
            return InvalidInput(name, f"token ids must be {where}")
    if not logprobs_ok(logprobs):
        return InvalidInput(
            "behavior_logprobs", f"must be finite log-probabilities (<= 0, tolerance {LOGPROB_MAX})"
        )
    return None


def _trajectory(
    msg: trajectory_pb2.Trajectory,
    prompt: np.ndarray,
    completion: np.ndarray,
    logprobs: np.ndarray,
) -> Trajectory:
    feedback = msg.feedback
    return Trajectory(
        id=msg.id,
        group_id=msg.group_id,
        prompt_ids=prompt,
        completion_ids=completion,
        behavior_logprobs=logprobs,
        reward=msg.reward,
        policy_version=msg.policy_version,
        worker_id=msg.worker_id,
        group_size=msg.group_size or 1,
        prompt_key=msg.prompt_key,
        reward_parts=[RewardPart(p.name, p.value, p.weight) for p in msg.reward_parts],
        feedback_source=feedback.source,
        feedback_latency_s=feedback.latency_s,
        rater=feedback.rater,
    )
