"""The Trajectory record: one completion with everything the learner needs, in plain Python.

Workers build these, `rewardloop.wire` turns them into protobuf and back, and the learner's
buffer holds them. `id` is the idempotency key end to end.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RewardPart:
    name: str
    value: float
    weight: float = 1.0


@dataclass
class Trajectory:
    id: str
    """Globally unique; a trajectory is trained on at most once."""
    group_id: str
    """Completions of the same prompt share a group (the baseline of group-relative methods)."""
    prompt_ids: list[int]
    completion_ids: list[int]
    behavior_logprobs: list[float]
    """log p(token) under the weights that sampled it, one per completion token."""
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

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_ids) + len(self.completion_ids)
