"""The one config system: frozen dataclasses, loaded from YAML, overridden with `--set a.b=v`.

Every field has a doc line. Validation runs in `__post_init__` and raises `ConfigError` with a
message that names the key and says what to change, so a bad value stops a run at once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

from rewardloop.errors import ConfigError

ALGORITHMS = ("grpo", "rloo", "reinforce", "ppo")
REWARD_KINDS = ("persona", "function", "http", "grpc", "human")


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


class _Section:
    """Mixin: `key(name)` gives the dotted key of a field for error messages."""

    section: ClassVar[str] = ""

    def key(self, name: str) -> str:
        return f"{self.section}.{name}" if self.section else name


@dataclass(frozen=True)
class ModelConfig(_Section):
    section: ClassVar[str] = "model"
    name_or_path: str = "default"
    """`default`: the task's tiny model, built once and cached; else a local HF dir or id."""
    cache_dir: str = "~/.cache/rewardloop"
    """Where built default models and tokenizers are cached."""
    pretrain_seconds: float = 240.0
    """Cap on the wall-clock seconds of the default model's pre-training."""
    pretrain_steps: int = 800
    """Pre-training steps of the default model (about a minute on 2 idle cores; 0 = as many as
    pretrain_seconds allows). Fixed steps build the same model on a busy machine as on an idle one."""
    n_layer: int = 2
    """Layers of the default GPT-2-shaped model."""
    n_embd: int = 128
    """Width of the default model."""
    vocab_size: int = 1024
    """BPE vocabulary size of the default tokenizer."""
    dtype: str = "float32"
    """Learner compute dtype on a GPU: float32, or bfloat16 autocast with float32 master weights."""

    def __post_init__(self) -> None:
        _require(bool(self.name_or_path), self.key("name_or_path"), "must not be empty")
        _require(self.pretrain_seconds > 0, self.key("pretrain_seconds"), "must be > 0")
        _require(
            self.pretrain_steps >= 0, self.key("pretrain_steps"), "must be >= 0 (0 = time-bound)"
        )
        _require(self.n_layer >= 1, self.key("n_layer"), "must be >= 1")
        _require(
            self.n_embd >= 8 and self.n_embd % 4 == 0,
            self.key("n_embd"),
            "must be a multiple of 4, >= 8",
        )
        _require(self.vocab_size >= 300, self.key("vocab_size"), "must be >= 300 (bytes + merges)")
        _require(
            self.dtype in ("float32", "bfloat16"), self.key("dtype"), "use float32 or bfloat16"
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
        _require(
            self.weight_sync in ("object_store", "grpc"),
            self.key("weight_sync"),
            "use object_store or grpc",
        )
        _require(self.torch_threads >= 1, self.key("torch_threads"), "must be >= 1")
        _require(self.rpc_timeout_s > 0, self.key("rpc_timeout_s"), "must be > 0")
        _require(
            self.max_pending_groups >= 0,
            self.key("max_pending_groups"),
            "must be >= 0 (0 = no bound)",
        )


@dataclass(frozen=True)
class LearnerConfig(_Section):
    section: ClassVar[str] = "learner"
    algorithm: str = "grpo"
    """grpo (group-relative, PPO-clip), rloo, reinforce (running-mean baseline), ppo."""
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
    ppo_epochs: int = 1
    """ppo: optimizer passes over each batch, all clipped against the behavior log-probs."""
    is_cap: float = 2.0
    """Truncation cap for importance weights learner/behavior on stale data."""
    scale_std: bool = True
    """GRPO: divide group-relative advantages by the group's std."""
    aggregation: str = "token"
    """Loss aggregation: token (mean over all tokens) or sequence (mean of per-sequence means)."""
    kl_coef: float = 0.0
    """Weight of the KL penalty to the frozen reference (0 = no reference kept)."""
    kl_estimator: str = "k3"
    """KL estimator: k1 or k3."""
    entropy_coef: float = 0.0
    """Entropy bonus weight."""
    grad_clip: float = 1.0
    """Max global grad norm (0 = off)."""
    device: str = "auto"
    """auto (cuda when available), cpu or cuda."""
    port: int = 0
    """TrajectoryService port (0 = a free one)."""
    host: str = "127.0.0.1"
    """Interface the ingest and weight servers bind."""
    wait_timeout_s: float = 120.0
    """Longest the learner waits for a full batch before it reports starvation."""
    torch_threads: int = 1
    """torch intra-op threads on the learner (CPU)."""

    def __post_init__(self) -> None:
        _require(
            self.algorithm in ALGORITHMS,
            self.key("algorithm"),
            f"use one of {', '.join(ALGORITHMS)}",
        )
        _require(
            0 < self.lr < 1,
            self.key("lr"),
            f"must be in (0, 1), got {self.lr}; e.g. --set learner.lr=1e-3",
        )
        _require(
            self.lr_schedule in ("constant", "linear", "cosine"),
            self.key("lr_schedule"),
            "use constant, linear or cosine",
        )
        _require(self.warmup_steps >= 0, self.key("warmup_steps"), "must be >= 0")
        _require(self.groups_per_step >= 1, self.key("groups_per_step"), "must be >= 1")
        _require(self.max_steps >= 1, self.key("max_steps"), "must be >= 1")
        _require(self.max_staleness >= 0, self.key("max_staleness"), "must be >= 0")
        _require(
            self.buffer_capacity >= 0, self.key("buffer_capacity"), "must be >= 0 (0 = automatic)"
        )
        _require(0 < self.clip_eps < 1, self.key("clip_eps"), "must be in (0, 1)")
        _require(self.ppo_epochs >= 1, self.key("ppo_epochs"), "must be >= 1")
        _require(self.is_cap >= 1, self.key("is_cap"), "must be >= 1")
        _require(
            self.aggregation in ("token", "sequence"),
            self.key("aggregation"),
            "use token or sequence",
        )
        _require(self.kl_coef >= 0, self.key("kl_coef"), "must be >= 0")
        _require(self.kl_estimator in ("k1", "k3"), self.key("kl_estimator"), "use k1 or k3")
        _require(self.grad_clip >= 0, self.key("grad_clip"), "must be >= 0 (0 = off)")
        _require(
            self.device in ("auto", "cpu", "cuda"), self.key("device"), "use auto, cpu or cuda"
        )
        _require(0 <= self.port < 65536, self.key("port"), "must be a TCP port or 0")
        _require(self.wait_timeout_s > 0, self.key("wait_timeout_s"), "must be > 0")
        _require(self.torch_threads >= 1, self.key("torch_threads"), "must be >= 1")


@dataclass(frozen=True)
class RewardConfig(_Section):
    section: ClassVar[str] = "reward"
    kind: str = "persona"
    """persona, function, http, grpc or human (see README: Your own feedback)."""
    like_prob: float = 0.9
    """Persona: probability a reader likes a well-formed headline on a topic they like."""
    dislike_prob: float = 0.1
    """Persona: probability a reader likes a well-formed headline on another topic."""
    function: str = ""
    """function: import path `package.module:callable` taking (prompts, completions, metadata)."""
    url: str = ""
    """http: the reward service URL; grpc: host:port of a FeedbackService."""
    timeout_s: float = 10.0
    """Deadline for one call to a remote reward service."""
    max_batch: int = 64
    """Items per call to a remote reward service."""
    retries: int = 3
    """Retries (with exponential backoff) on a failed remote call."""
    max_concurrency: int = 4
    """Concurrent calls a worker makes to a remote reward service."""
    headers: dict = field(default_factory=dict)
    """Extra HTTP headers, e.g. {Authorization: Bearer <token>}."""
    ca_cert: str = ""
    """PEM file of the CA to trust for https:// and grpcs:// reward services (empty = system roots)."""
    sources: tuple = ()
    """Weighted combination (overrides kind): [{kind: http, weight: 0.7, url: ...}, {kind: human, ...}]."""

    def __post_init__(self) -> None:
        _require(
            self.kind in REWARD_KINDS, self.key("kind"), f"use one of {', '.join(REWARD_KINDS)}"
        )
        _require(
            0 <= self.dislike_prob <= self.like_prob <= 1,
            self.key("like_prob"),
            "need 0 <= dislike_prob <= like_prob <= 1",
        )
        _require(
            self.kind != "function" or ":" in self.function,
            self.key("function"),
            "set it to `module.path:callable`",
        )
        _require(
            self.kind not in ("http", "grpc") or bool(self.url),
            self.key("url"),
            f"reward.kind={self.kind} needs reward.url",
        )  # human: RunConfig checks (autostart fills it)
        _require(self.timeout_s > 0, self.key("timeout_s"), "must be > 0")
        _require(self.max_batch >= 1, self.key("max_batch"), "must be >= 1")
        _require(self.retries >= 0, self.key("retries"), "must be >= 0")
        _require(self.max_concurrency >= 1, self.key("max_concurrency"), "must be >= 1")
        _require(
            isinstance(self.headers, dict),
            self.key("headers"),
            "must be a mapping of header: value",
        )
        self.source_configs()  # validates every entry of `sources`

    def source_configs(self) -> list[tuple[str, float, RewardConfig]]:
        """(name, weight, config) per entry of `sources`; each inherits this section's other keys."""
        known = {f.name for f in dataclasses.fields(self)} - {"sources"}
        out, names = [], set()
        for i, spec in enumerate(self.sources):
            key = f"{self.key('sources')}[{i}]"
            _require(
                isinstance(spec, dict),
                key,
                "each source is a mapping like {kind: http, weight: 0.5, url: ...}",
            )
            _require(
                spec.get("kind") in REWARD_KINDS,
                f"{key}.kind",
                f"use one of {', '.join(REWARD_KINDS)}",
            )
            weight = spec.get("weight", 1.0)
            _require(
                isinstance(weight, (int, float))
                and not isinstance(weight, bool)
                and abs(weight) < float("inf"),
                f"{key}.weight",
                "must be a finite number",
            )
            unknown = sorted(set(spec) - known - {"weight", "name"})
            _require(
                not unknown,
                f"{key}.{unknown[0] if unknown else ''}",
                f"unknown key; known: weight, name, {', '.join(sorted(known))}",
            )
            name = str(spec.get("name") or spec["kind"])
            _require(
                name not in names,
                f"{key}.name",
                f"{name!r} is used twice; give each source a distinct name",
            )
            names.add(name)
            from rewardloop.config_loading import _coerce, _field_types

            types_ = _field_types(RewardConfig)
            overrides = {
                k: _coerce(v, types_[k], f"{key}.{k}")
                for k, v in spec.items()
                if k not in ("weight", "name")
            }
            try:
                sub = dataclasses.replace(self, sources=(), **overrides)
            except ConfigError as exc:
                raise ConfigError(f"{key}.{str(exc).removeprefix('reward.')}") from None
            except TypeError as exc:
                raise ConfigError(f"{key}: {exc}") from None
            out.append((name, float(weight), sub))
        return out


@dataclass(frozen=True)
class FeedbackConfig(_Section):
    section: ClassVar[str] = "feedback"
    store_path: str = "~/.local/share/rewardloop/feedback.sqlite3"
    """The gateway's SQLite store (WAL mode); ratings are written here before they are acked."""
    expiry_s: float = 3600.0
    """Seconds a published item waits for a rating before the expiry outcome applies."""
    expiry_outcome: str = "drop"
    """What an expired item becomes: drop (the worker discards the trajectory) or neutral."""
    neutral_reward: float = 0.5
    """Reward of an item that expired with expiry_outcome=neutral."""
    token: str = ""
    """Bearer token every gateway call but health needs (a literal or env:NAME; empty = open)."""
    tls_cert: str = ""
    """PEM certificate: serve gRPC over TLS and HTTP over HTTPS (needs tls_key)."""
    tls_key: str = ""
    """PEM private key matching tls_cert."""
    host: str = "127.0.0.1"
    """Interface the gateway binds (0.0.0.0 to let raters on other machines in)."""
    http_port: int = 8470
    """Port of the HTTP/JSON API and the rating page (0 = a free one)."""
    grpc_port: int = 8471
    """Port of the gRPC FeedbackService (0 = a free one)."""
    max_request_bytes: int = 1 << 20
    """Largest request body the gateway accepts (HTTP 413 / gRPC RESOURCE_EXHAUSTED beyond)."""
    retention_days: float = 30.0
    """Raw ratings and finished items older than this are purged (0 = keep forever)."""
    content_check: str = ""
    """`module:callable` run on every item before a rater or user sees it; empty = built-in no-op."""
    blocked_reward: float = -1.0
    """Reward of an item the content check blocked (it is never shown)."""
    autostart: bool = False
    """`train` starts this gateway (a Ray actor) and points reward.url at it; a relative store_path lands in the run dir."""
    simulated_raters: int = 0
    """helpdesk: simulated users rating through the autostarted gateway's HTTP API (0 = none; people rate)."""
    rating_delay_s: float = 2.0
    """Mean seconds a simulated rater takes to answer (each delay is uniform in [0.5, 1.5] x this)."""

    def __post_init__(self) -> None:
        _require(
            bool(self.store_path),
            self.key("store_path"),
            "must not be empty (use :memory: for a throwaway store)",
        )
        _require(self.expiry_s > 0, self.key("expiry_s"), "must be > 0")
        _require(
            self.expiry_outcome in ("drop", "neutral"),
            self.key("expiry_outcome"),
            "use drop or neutral",
        )
        _require(
            abs(self.neutral_reward) < float("inf"), self.key("neutral_reward"), "must be finite"
        )
        _require(
            bool(self.tls_cert) == bool(self.tls_key),
            self.key("tls_cert"),
            "set both feedback.tls_cert and feedback.tls_key, or neither",
        )
        _require(bool(self.host), self.key("host"), "must not be empty")
        _require(0 <= self.http_port < 65536, self.key("http_port"), "must be a TCP port or 0")
        _require(0 <= self.grpc_port < 65536, self.key("grpc_port"), "must be a TCP port or 0")
        _require(self.max_request_bytes >= 1024, self.key("max_request_bytes"), "must be >= 1024")
        _require(
            self.retention_days >= 0, self.key("retention_days"), "must be >= 0 (0 = keep forever)"
        )
        _require(
            not self.content_check or ":" in self.content_check,
            self.key("content_check"),
            "set it to `module.path:callable` or leave it empty",
        )
        _require(
            abs(self.blocked_reward) < float("inf"), self.key("blocked_reward"), "must be finite"
        )
        _require(
            self.simulated_raters >= 0, self.key("simulated_raters"), "must be >= 0 (0 = none)"
        )
        _require(
            not self.simulated_raters or self.autostart,
            self.key("simulated_raters"),
            "they rate through the gateway the run starts: set feedback.autostart=true",
        )
        _require(self.rating_delay_s >= 0, self.key("rating_delay_s"), "must be >= 0 seconds")


@dataclass(frozen=True)
class EvalConfig(_Section):
    section: ClassVar[str] = "eval"
    samples_per_prompt: int = 16
    """Completions sampled per held-out prompt when measuring like rates."""
    every_steps: int = 20
    """Evaluate on held-out prompts every this many steps (0 = only at start and end)."""
    target: float = 0.85
    """Stop early once every key's held-out rate reaches this (0 = train for max_steps)."""

    def __post_init__(self) -> None:
        _require(self.samples_per_prompt >= 1, self.key("samples_per_prompt"), "must be >= 1")
        _require(self.every_steps >= 0, self.key("every_steps"), "must be >= 0")
        _require(0 <= self.target <= 1, self.key("target"), "must be in [0, 1] (0 = off)")


@dataclass(frozen=True)
class ClusterConfig(_Section):
    section: ClassVar[str] = "cluster"
    address: str = ""
    """Ray address to join (empty = start an embedded local Ray)."""
    num_cpus: int = 0
    """CPUs for the embedded local Ray (0 = all of this machine's)."""
    learner_gpus: float = -1
    """GPUs for the learner actor (-1 = one if the cluster has any, else none)."""

    def __post_init__(self) -> None:
        _require(self.num_cpus >= 0, self.key("num_cpus"), "must be >= 0")


@dataclass(frozen=True)
class RunConfig(_Section):
    section: ClassVar[str] = ""
    task: str = "newsfeed"
    """The example whose prompts, readers and default model are used."""
    seed: int = 0
    """Seed for sampling, prompts and persona draws."""
    out: str = "runs/latest"
    """Run directory: metrics.jsonl, reward_curve.png, checkpoint/, summary.json."""
    model: ModelConfig = field(default_factory=ModelConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def __post_init__(self) -> None:
        _require(self.task in ("newsfeed", "helpdesk"), "task", "use newsfeed or helpdesk")
        rewards = [sub for _, _, sub in self.reward.source_configs()] or [self.reward]
        _require(
            all(r.kind != "human" or r.url for r in rewards) or self.feedback.autostart,
            "reward.url",
            "reward.kind=human needs reward.url (the gateway), or feedback.autostart=true to start one",
        )
        _require(
            not self.feedback.simulated_raters or self.task == "helpdesk",
            "feedback.simulated_raters",
            "simulated raters are help-desk users: set task=helpdesk or 0",
        )
        groups = self.learner.groups_per_step * self.rollout.group_size
        _require(
            self.learner.buffer_capacity == 0 or self.learner.buffer_capacity >= groups,
            "learner.buffer_capacity",
            f"must hold one step's trajectories ({groups} = groups_per_step x group_size)",
        )


def buffer_capacity(cfg: RunConfig) -> int:
    """learner.buffer_capacity, 0 resolved so that queued data never outlives max_staleness.

    Workers generate only when they hold credits, with the newest weights. With s steps of data
    queued (the learner training on one), a batch started now is consumed <= s versions later.
    The N workers share these credits in whole groups (learner/credits.py), each generating as
    many groups as it holds credits for, so the capacity does not grow with N: more would only
    let data arrive too stale to train on.
    """
    step = cfg.learner.groups_per_step * cfg.rollout.group_size
    return cfg.learner.buffer_capacity or step * max(1, cfg.learner.max_staleness)


# The loader lives beside this file; import it from here as before.
from rewardloop.config_loading import (  # noqa: E402
    load_config,
    parse_override,
    replace,
    to_dict,
)

__all__ = ["RunConfig", "load_config", "parse_override", "replace", "to_dict", "buffer_capacity"]
