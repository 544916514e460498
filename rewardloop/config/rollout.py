"""`rollout`: how rollout workers generate, send and receive weights."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .base import WEIGHT_SYNCS, _require, _Section, one_of


@dataclass(frozen=True)
class AutoscaleConfig(_Section):
    """`rollout.autoscale`: the driver adds or removes one rollout worker at a time while
    training, judged on the last `window_steps` steps (cluster/autoscale.py)."""

    section: ClassVar[str] = "rollout.autoscale"
    enabled: bool = False
    """Scale the rollout workers between min_workers and max_workers while training."""
    min_workers: int = 1
    """Never fewer rollout workers than this."""
    max_workers: int = 4
    """Never more rollout workers than this (each needs cluster.rollout_resources)."""
    add_above_wait_fraction: float = 0.5
    """Add a worker when the learner spent more than this fraction of the recent steps' time
    waiting for data."""
    remove_below_wait_fraction: float = 0.05
    """Remove a worker when the learner waited less than this fraction of the recent steps'
    time while the buffer was at least remove_above_buffer_fraction full."""
    remove_above_buffer_fraction: float = 0.9
    """The buffer depth (fraction of learner.buffer_capacity) at which workers make more than
    the learner trains on."""
    window_steps: int = 4
    """Training steps each decision looks back over."""
    cooldown_s: float = 20.0
    """Seconds after any change (by the autoscaler or `rewardloop scale`) before the next."""

    def __post_init__(self) -> None:
        _require(self.min_workers >= 1, self.key("min_workers"), "must be >= 1")
        _require(
            self.max_workers >= self.min_workers,
            self.key("max_workers"),
            f"must be >= rollout.autoscale.min_workers ({self.min_workers})",
        )
        for name in (
            "add_above_wait_fraction",
            "remove_below_wait_fraction",
            "remove_above_buffer_fraction",
        ):
            _require(0 <= getattr(self, name) <= 1, self.key(name), "must be in [0, 1]")
        _require(
            self.remove_below_wait_fraction < self.add_above_wait_fraction,
            self.key("remove_below_wait_fraction"),
            "must be below rollout.autoscale.add_above_wait_fraction "
            f"({self.add_above_wait_fraction}), or the autoscaler would flap",
        )
        _require(self.window_steps >= 1, self.key("window_steps"), "must be >= 1")
        _require(
            0 <= self.cooldown_s < float("inf"), self.key("cooldown_s"), "must be a number >= 0"
        )


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
    retain_acked: int = 4096
    """Acked trajectories a worker keeps (in memory, and in its spool) until the learner's resume
    checkpoint covers them, and re-sends to a restarted learner (oldest forgotten first past
    this; 0 = keep none)."""
    max_restarts: int = 3
    """Times Ray restarts a rollout worker whose process died (SIGKILL, OOM); it re-sends what it
    had not got acked from its spool, and the run goes on meanwhile. Past this the run stops,
    naming the worker (0 = no restarts: a dead worker stops the run)."""
    spool_dir: str = ""
    """Where each rollout worker spools what it sends (<spool_dir>/<worker_id>/), for re-sending
    after a restart and for the run's accounting; "" = the run directory's spool/. This run's
    alone; with workers on several nodes, a volume they and the driver share."""
    autoscale: AutoscaleConfig = field(default_factory=AutoscaleConfig)

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
        _require(self.retain_acked >= 0, self.key("retain_acked"), "must be >= 0 (0 = keep none)")
        _require(self.max_restarts >= 0, self.key("max_restarts"), "must be >= 0 (0 = no restarts)")
        auto = self.autoscale
        _require(
            not auto.enabled or auto.min_workers <= self.num_workers <= auto.max_workers,
            self.key("num_workers"),
            f"must be within rollout.autoscale.min_workers..max_workers "
            f"({auto.min_workers}..{auto.max_workers}) when rollout.autoscale.enabled",
        )
