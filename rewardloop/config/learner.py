"""`learner`: the algorithm, its knobs, the buffer and the learner's servers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import (
    AGGREGATIONS,
    ALGORITHMS,
    DEVICES,
    IS_LEVELS,
    KL_ESTIMATORS,
    LR_SCHEDULES,
    _require,
    _Section,
    one_of,
)

RLOO_LOSSES = ("is", "clip")
PPO_BASELINES = ("running", "group")
REINFORCE_LOSSES = ("is", "clip")
REINFORCE_BASELINES = ("running", "group")


@dataclass(frozen=True)
class LearnerConfig(_Section):
    section: ClassVar[str] = "learner"
    algorithm: str = "grpo"
    """grpo (group-relative, PPO-clip), rloo, reinforce (running-mean baseline, PPO-clip), ppo."""
    lr: float = 5e-4
    """Adam learning rate (>= 7e-4 destabilizes the default model: gibberish or a stuck reader)."""
    lr_schedule: str = "constant"
    """constant, linear or cosine decay to 10% over max_steps, after warmup_steps."""
    warmup_steps: int = 10
    """Linear warm-up steps."""
    groups_per_step: int = 3
    """Groups (prompts x group_size trajectories) consumed by one optimizer step."""
    max_steps: int = 500
    """Optimizer steps in a run (an upper bound when eval.target stops it earlier)."""
    max_staleness: int = 1
    """Drop trajectories more than this many versions behind (0 = strictly on-policy)."""
    buffer_capacity: int = 0
    """Trajectories the learner buffers = total credits granted to workers (0 = automatic:
    groups_per_step x group_size x max(1, max_staleness); more lets data arrive too stale)."""
    clip_eps: float = 0.2
    """PPO clip range for the policy ratio."""
    clip_eps_high: float = 0.0
    """grpo, ppo: upper clip bound 1 + clip_eps_high (DAPO's clip-higher, e.g. 0.28; 0 = clip_eps)."""
    dual_clip: float = 0.0
    """grpo, ppo: dual-clip c > 1 for negative advantages, objective >= c x A (e.g. 3; 0 = off)."""
    log_ratio_bound: float = 20.0
    """Clamp log(pi / pi_old) and log(pi_ref / pi) to +-this before exp, so one extreme token
    cannot overflow a ratio into a NaN step."""
    ppo_baseline: str = "running"
    """ppo: what a reward is measured against before the batch-std scaling: running (a moving
    mean of all rewards) or group (the mean of its own group, OpenRLHF's REINFORCE++-baseline).
    group did not free the news feed's stuck reader: 18 of 20 seeds (bench/README.md, seeds)."""
    ppo_epochs: int = 1
    """ppo: optimizer passes over each batch, all clipped against the behavior log-probs."""
    is_cap: float = 2.0
    """Truncation cap for importance weights learner/behavior on stale data."""
    is_level: str = "token"
    """rloo, reinforce: truncated importance weights per token or per completion (the product of
    its ratios); grpo, ppo: the clipped ratio per token or per completion (GSPO's
    exp(mean log ratio))."""
    scale_std: bool = True
    """GRPO: divide group-relative advantages by the group's std."""
    rloo_scale_std: bool = False
    """rloo: divide leave-one-out advantages by the group's std, as grpo's scale_std does. Not
    a fix for the news feed's stuck reader: 7 of 10 seeds reached (bench/README.md, seeds)."""
    rloo_loss: str = "clip"
    """rloo: clip (PPO-clip against the behavior log-probs, as grpo and ppo; the loss TRL,
    OpenRLHF and verl pair with RLOO) or is (policy gradient x truncated importance weights,
    the old default: 14 of 20 news-feed seeds, one reader stuck; bench/README.md, seeds)."""
    reinforce_baseline: str = "running"
    """reinforce: running (r minus a running mean over all rewards) or group (r minus its
    prompt group's mean, scaled by the batch's std: REINFORCE++-baseline; twice the step, 3 of
    4 hard news-feed seeds; bench/README.md, seeds)."""
    reinforce_loss: str = "clip"
    """reinforce: clip (PPO-clip against the behavior log-probs, as OpenRLHF trains its
    REINFORCE++ estimators: 19 of 20 news-feed seeds, none collapsed) or is (policy gradient x
    truncated importance weights: 13 of 20, 4 collapsed into malformed text; bench/README.md)."""
    aggregation: str = "token"
    """Loss aggregation: token (mean over all tokens), sequence (mean of per-sequence means) or
    constant (sum / (B x norm_tokens), Dr. GRPO's; with scale_std=false that is Dr. GRPO)."""
    norm_tokens: int = 0
    """aggregation=constant: tokens per completion in the normaliser (0 = rollout.max_new_tokens)."""
    filter_constant_groups: bool = False
    """Dynamic sampling (DAPO): leave groups whose rewards are all equal out of the step (they
    carry no signal but dilute the mean); a step with no group left is skipped, counted."""
    mask_truncated: bool = False
    """Overlong filtering (DAPO): completions cut off by rollout.max_new_tokens (no eos at the
    end) get no gradient; they still count in their group's baseline."""
    kl_coef: float = 0.0
    """Weight of the KL penalty to the frozen reference (0 = no reference kept)."""
    kl_estimator: str = "k3"
    """KL estimator: k1 (log ratio), k2 (half its square) or k3 (GRPO's, the default)."""
    entropy_coef: float = 0.0
    """Entropy bonus weight."""
    first_token_entropy_coef: float = 0.0
    """Entropy bonus on the first completion token only (mean over completions), where a
    completion commits to what it is about (the news feed's topic), not on the wording. Did not
    free a stuck reader on the news feed (bench/README.md, seeds): 0.002 no effect, 0.01 spreads
    the first token over non-headline tokens."""
    grad_clip: float = 1.0
    """Max global grad norm (0 = off)."""
    micro_batch_size: int = 0
    """Sequences per forward/backward; gradients accumulate to the whole step's (0 = one pass)."""
    gradient_checkpointing: bool = False
    """Recompute each block's activations in backward (less memory, ~1/3 more compute; HF models)."""
    logprob_chunk_rows: int = 128
    """Token rows per float32 chunk of the selective log-softmax and fused output layer
    (0 = the old full float32 [B, T, V] log-softmax, kept for `bench memory`)."""
    device: str = "auto"
    """auto (cuda when available), cpu or cuda."""
    port: int = 0
    """TrajectoryService port (0 = a free one)."""
    host: str = "127.0.0.1"
    """Interface the ingest and weight servers bind (non-loopback needs token or allow_insecure)."""
    token: str = ""
    """Bearer token TrajectoryService and WeightService require (literal or env:NAME; "" = none)."""
    tls_cert: str = ""
    """PEM certificate chain the ingest and weight servers serve TLS with (with tls_key)."""
    tls_key: str = ""
    """PEM private key of tls_cert."""
    allow_insecure: bool = False
    """Serve a non-loopback host without a token (only behind a trusted network boundary)."""
    serve_weights: bool = False
    """Also serve WeightService (gRPC) for workers outside the cluster (`rewardloop worker`);
    always on with rollout.weight_sync=grpc. The run writes both addresses to endpoints.json."""
    weights_port: int = 0
    """WeightService port when it is served (0 = a free one; fix it for workers that reach the
    learner through a Service or a firewall, e.g. `rewardloop worker --weights HOST:PORT`)."""
    metrics_port: int = 0
    """Prometheus /metrics port of the learner (0 = a free one, recorded in the run's
    endpoints.json; -1 = off)."""
    metrics_host: str = "127.0.0.1"
    """Interface /metrics binds; it serves counts only, no token (see README, Live metrics)."""
    max_streams: int = 128
    """Worker streams (ingest) and weight long-polls each learner server serves at once; one
    more is refused at once with RESOURCE_EXHAUSTED. Each holds a thread; health checks have
    threads of their own, so they answer even when every stream is taken."""
    max_trajectory_tokens: int = 65536
    """Longest trajectory (prompt + completion tokens) ingest accepts; a longer one is rejected
    (counted, reason naming this key) without touching the buffer."""
    wait_timeout_s: float = 120.0
    """Longest the learner waits for a full batch before it reports starvation."""
    torch_threads: int = 1
    """torch intra-op threads on the learner (CPU)."""
    checkpoint_every_steps: int = 10
    """Write a resume checkpoint (`<out>/resume/`: model, optimizer, RNG, buffer, accounting)
    every this many steps; one is always written when the run stops (0 = only then)."""
    max_restarts: int = 3
    """Times Ray restarts a learner whose process died; it resumes from its newest resume
    checkpoint within the same run (0 = a dead learner ends the run)."""
    restart_timeout_s: float = 300.0
    """Longest the driver waits for a restarting learner to answer again before giving up."""

    def __post_init__(self) -> None:
        _require(
            self.algorithm in ALGORITHMS,
            self.key("algorithm"),
            one_of(ALGORITHMS),
        )
        _require(
            0 < self.lr < 1,
            self.key("lr"),
            f"must be in (0, 1), got {self.lr!r}; e.g. --set learner.lr=1e-3",
        )
        _require(self.lr_schedule in LR_SCHEDULES, self.key("lr_schedule"), one_of(LR_SCHEDULES))
        _require(self.warmup_steps >= 0, self.key("warmup_steps"), "must be >= 0")
        _require(self.groups_per_step >= 1, self.key("groups_per_step"), "must be >= 1")
        _require(self.max_steps >= 1, self.key("max_steps"), "must be >= 1")
        _require(self.max_staleness >= 0, self.key("max_staleness"), "must be >= 0")
        _require(
            self.buffer_capacity >= 0, self.key("buffer_capacity"), "must be >= 0 (0 = automatic)"
        )
        _require(0 < self.clip_eps < 1, self.key("clip_eps"), "must be in (0, 1)")
        _require(
            0 <= self.clip_eps_high < 1,
            self.key("clip_eps_high"),
            "must be in [0, 1) (0 = the same as clip_eps)",
        )
        _require(
            self.dual_clip == 0 or self.dual_clip > 1,
            self.key("dual_clip"),
            f"must be > 1 (e.g. 3) or 0 (off), got {self.dual_clip!r}",
        )
        _require(
            self.log_ratio_bound > 0,
            self.key("log_ratio_bound"),
            f"must be > 0 (e.g. 20), got {self.log_ratio_bound!r}",
        )
        _require(
            self.norm_tokens >= 0, self.key("norm_tokens"), "must be >= 0 (0 = max_new_tokens)"
        )
        _require(self.ppo_epochs >= 1, self.key("ppo_epochs"), "must be >= 1")
        _require(
            self.ppo_baseline in PPO_BASELINES, self.key("ppo_baseline"), one_of(PPO_BASELINES)
        )
        _require(self.is_cap >= 1, self.key("is_cap"), "must be >= 1")
        _require(self.is_level in IS_LEVELS, self.key("is_level"), one_of(IS_LEVELS))
        _require(self.rloo_loss in RLOO_LOSSES, self.key("rloo_loss"), one_of(RLOO_LOSSES))
        _require(
            self.reinforce_loss in REINFORCE_LOSSES,
            self.key("reinforce_loss"),
            one_of(REINFORCE_LOSSES),
        )
        _require(
            self.reinforce_baseline in REINFORCE_BASELINES,
            self.key("reinforce_baseline"),
            one_of(REINFORCE_BASELINES),
        )
        _require(self.aggregation in AGGREGATIONS, self.key("aggregation"), one_of(AGGREGATIONS))
        _require(self.kl_coef >= 0, self.key("kl_coef"), "must be >= 0")
        _require(
            self.first_token_entropy_coef >= 0,
            self.key("first_token_entropy_coef"),
            "must be >= 0 (0 = off)",
        )
        _require(
            self.kl_estimator in KL_ESTIMATORS, self.key("kl_estimator"), one_of(KL_ESTIMATORS)
        )
        _require(self.grad_clip >= 0, self.key("grad_clip"), "must be >= 0 (0 = off)")
        _require(
            self.micro_batch_size >= 0,
            self.key("micro_batch_size"),
            "must be >= 0 (0 = the whole batch at once)",
        )
        _require(
            self.logprob_chunk_rows >= 0,
            self.key("logprob_chunk_rows"),
            "must be >= 0 (0 = unchunked)",
        )
        _require(self.device in DEVICES, self.key("device"), one_of(DEVICES))
        _require(0 <= self.port < 65536, self.key("port"), "must be a TCP port or 0")
        _require(
            0 <= self.weights_port < 65536, self.key("weights_port"), "must be a TCP port or 0"
        )
        _require(
            not self.port or self.weights_port != self.port,
            self.key("weights_port"),
            f"must differ from learner.port ({self.port})",
        )
        _require(
            bool(self.tls_cert) == bool(self.tls_key),
            self.key("tls_cert"),
            "give learner.tls_cert and learner.tls_key together, or neither",
        )
        _require(
            -1 <= self.metrics_port < 65536,
            self.key("metrics_port"),
            "must be a TCP port, 0 (a free one) or -1 (off)",
        )
        _require(self.max_streams >= 1, self.key("max_streams"), "must be >= 1")
        _require(
            self.max_trajectory_tokens >= 2,
            self.key("max_trajectory_tokens"),
            "must be >= 2 (one prompt and one completion token)",
        )
        _require(self.wait_timeout_s > 0, self.key("wait_timeout_s"), "must be > 0")
        _require(self.torch_threads >= 1, self.key("torch_threads"), "must be >= 1")
        _require(
            self.checkpoint_every_steps >= 0,
            self.key("checkpoint_every_steps"),
            "must be >= 0 (0 = only when the run stops)",
        )
        _require(self.max_restarts >= 0, self.key("max_restarts"), "must be >= 0")
        _require(self.restart_timeout_s > 0, self.key("restart_timeout_s"), "must be > 0")
