"""The Trajectory record: one completion with everything the learner needs.

Workers build these, `rewardloop.wire` turns them into protobuf and back, and the learner's
buffer holds them. `id` is the idempotency key end to end.

Token ids and log-probs are numpy arrays (int32 ids, float32 log-probs) whatever the caller
passed (a list, an array, a CPU tensor): one type everywhere, so the wire encodes them with one
`tobytes()` and the learner batches them with numpy concatenation instead of per-token Python.
Arrays decoded from the wire are read-only views of the received bytes: treat them all as
immutable. Records compare by identity (`id` is the key), not by value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TOKEN_DTYPE = np.int32
LOGPROB_DTYPE = np.float32


@dataclass
class RewardPart:
    name: str
    value: float
    weight: float = 1.0


@dataclass(eq=False)
class Trajectory:
    id: str
    """Globally unique; a trajectory is trained on at most once."""
    group_id: str
    """Completions of the same prompt share a group (the baseline of group-relative methods)."""
    prompt_ids: np.ndarray
    """Prompt token ids, int32, 1-D."""
    completion_ids: np.ndarray
    """Generated token ids, int32, 1-D."""
    behavior_logprobs: np.ndarray
    """log p(token) under the weights that sampled it, float32, one per completion token."""
    reward: float
    policy_version: int
    """The weight version that generated every token of the completion."""
    worker_id: str = ""
    group_size: int = 1
    prompt_key: str = ""
    """A label for metrics, e.g. the reader the prompt names."""
    reward_parts: list[RewardPart] = field(default_factory=list)
    feedback_source: str = ""
    feedback_latency_s: float = 0.0
    rater: str = ""

    def __post_init__(self) -> None:
        # No copy when the caller already passes arrays of the right dtype (the decoder does).
        self.prompt_ids = np.asarray(self.prompt_ids, dtype=TOKEN_DTYPE)
        self.completion_ids = np.asarray(self.completion_ids, dtype=TOKEN_DTYPE)
        self.behavior_logprobs = np.asarray(self.behavior_logprobs, dtype=LOGPROB_DTYPE)

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_ids) + len(self.completion_ids)
