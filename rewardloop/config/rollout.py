"""`rollout`: how rollout workers generate, send and receive weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import WEIGHT_SYNCS, _require, _Section, one_of


@dataclass(frozen=True)
class RolloutConfig(_Section):
    section: ClassVar[str] = "rollout"
    num_workers: int = 1
    """Rollout worker actors to start."""
    group_size: int = 8
    """Completions sampled per prompt (G); advantages are relative within a group."""
    prompts_per_generation: int = 3
    """Prompts sampled per generation call (one group each); fewer when the worker's credits
    cover fewer groups (N workers share the learner's credits in whole groups)."""
    max_new_tokens: int = 24
    """Longest completion, in tokens."""
    temperature: float = 1.0
    """Sampling temperature (1.0 keeps behavior log-probs those of the policy itself)."""
    send_batch_size: int = 24
    """Trajectories per TrajectoryBatch on the gRPC stream."""
    weight_sync: str = "object_store"
    """How workers get new weights: object_store (in-cluster) or grpc (WeightService)."""
    torch_threads: int = 1
    """torch intra-op threads per worker."""
    rpc_timeout_s: float = 30.0
    """Deadline for every call a worker makes (acks, credits, weights)."""
    ca_cert: str = ""
    """PEM CA bundle workers trust for the learner's TLS (learner.tls_cert); "" = plaintext."""
    max_pending_groups: int = 0
    """Groups a worker may hold awaiting delayed rewards before it stops generating (0 = no bound)."""

    def __post_init__(self) -> None:
        _require(self.num_workers >= 1, self.key("num_workers"), "must be >= 1")
        _require(self.group_size >= 2, self.key("group_size"), "must be >= 2 for group baselines")
        _require(
            self.prompts_per_generation >= 1, self.key("prompts_per_generation"), "must be >= 1"
        )
        _require(self.max_new_tokens >= 1, self.key("max_new_tokens"), "must be >= 1")
        _require(self.temperature > 0, self.key("temperature"), "must be > 0")
        _require(self.send_batch_size >= 1, self.key("send_batch_size"), "must be >= 1")
        _require(self.weight_sync in WEIGHT_SYNCS, self.key("weight_sync"), one_of(WEIGHT_SYNCS))
        _require(self.torch_threads >= 1, self.key("torch_threads"), "must be >= 1")
        _require(self.rpc_timeout_s > 0, self.key("rpc_timeout_s"), "must be > 0")
        _require(
            self.max_pending_groups >= 0,
            self.key("max_pending_groups"),
            "must be >= 0 (0 = no bound)",
        )
