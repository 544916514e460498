"""The run as a whole: the task, its prompts, evaluation, the cluster, and RunConfig itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .base import PLACEMENT_STRATEGIES, _require, _Section, one_of
from .feedback import FeedbackConfig
from .learner import LearnerConfig
from .model import ModelConfig
from .reward import RewardConfig
from .rollout import RolloutConfig
from .serve import ServeConfig


@dataclass(frozen=True)
class PromptsConfig(_Section):
    section: ClassVar[str] = "prompts"
    path: str = ""
    """task=prompts: a JSONL file, one prompt per line (e.g. {"text": ..., "key": ...}); a relative
    path is looked up in datasets_dir, then in the current directory."""
    field: str = "text"
    """The JSON field holding the prompt text."""
    key_field: str = "key"
    """The field whose value labels a prompt in per-key metrics (absent = one key for all)."""
    completion_field: str = "completion"
    """Optional field with an example completion: the default model is pre-trained on these."""
    split_field: str = "split"
    """Rows whose split_field is "eval" are held out (used when eval_path is empty)."""
    eval_path: str = ""
    """A second JSONL file of held-out prompts (same fields); empty = split the main file."""
    eval_fraction: float = 0.1
    """Without eval_path or split rows: this fraction of prompts, chosen by a hash of the text, is
    held out for evaluation."""
    datasets_dir: str = ""
    """A local directory of prompt files, where a relative path is looked up first."""
    max_prompts: int = 0
    """Use at most this many training prompts (0 = all)."""

    def __post_init__(self) -> None:
        _require(bool(self.field), self.key("field"), "must name a JSON field")
        _require(0 <= self.eval_fraction < 1, self.key("eval_fraction"), "must be in [0, 1)")
        _require(self.max_prompts >= 0, self.key("max_prompts"), "must be >= 0 (0 = all)")


@dataclass(frozen=True)
class EvalConfig(_Section):
    section: ClassVar[str] = "eval"
    samples_per_prompt: int = 16
    """Completions sampled per held-out prompt at each evaluation."""
    every_steps: int = 20
    """Evaluate on held-out prompts every this many steps (0 = only at start and end)."""
    target: float = 0.85
    """Stop early once every key's held-out value of the run's eval metric (summary.json
    `eval.metric`: the task's like/helpful rate, or your reward) reaches this (0 = train for
    max_steps)."""

    def __post_init__(self) -> None:
        _require(self.samples_per_prompt >= 1, self.key("samples_per_prompt"), "must be >= 1")
        _require(self.every_steps >= 0, self.key("every_steps"), "must be >= 0")
        _require(
            abs(self.target) < float("inf"), self.key("target"), "must be a finite number (0 = off)"
        )


@dataclass(frozen=True)
class ClusterConfig(_Section):
    section: ClassVar[str] = "cluster"
    address: str = ""
    """Ray address to join, e.g. HOST:6379 (`train --address`; empty = RAY_ADDRESS if set, else
    start an embedded local Ray, shut down when the run ends)."""
    num_cpus: int = 0
    """CPUs for the embedded local Ray (0 = all of this machine's)."""
    learner_gpus: float = -1
    """GPUs for the learner actor (-1 = one if the cluster has any, else none); a GPU entry in
    learner_resources wins over it."""
    learner_resources: dict = field(default_factory=dict)
    """Ray resources for the learner, e.g. {CPU: 1, GPU: 0.5, my_node: 1} (fractions allowed;
    CPU defaults to 1, GPU to learner_gpus, other names are custom resources)."""
    rollout_resources: dict = field(default_factory=dict)
    """Ray resources for each rollout worker, e.g. {CPU: 1, rollout_node: 0.01} (CPU defaults to
    1, GPU to 0)."""
    placement_strategy: str = "PACK"
    """How the placement group lays out the learner's bundle and one bundle per worker: PACK (as
    few nodes as possible), SPREAD (across nodes where it can) or STRICT_SPREAD (one per node)."""
    placement_timeout_s: float = 120.0
    """Stop the run with an error naming what is short when the cluster cannot place the learner
    and workers within this many seconds (it never waits forever)."""
    control_host: str = "127.0.0.1"
    """Where the driver serves its control endpoint (`rewardloop scale`, recorded as `control` in
    the run's endpoints.json); a non-loopback host needs learner.token (or learner.allow_insecure)."""
    control_port: int = 0
    """Port of the control endpoint (0 = a free one, -1 = no control endpoint)."""

    def __post_init__(self) -> None:
        _require(self.num_cpus >= 0, self.key("num_cpus"), "must be >= 0")
        _require(
            self.control_port == -1 or 0 <= self.control_port <= 65535,
            self.key("control_port"),
            "must be a port 0..65535 (0 = a free one) or -1 (off)",
        )
        _require(bool(self.control_host), self.key("control_host"), "must name a host")
        for name in ("learner_resources", "rollout_resources"):
            resources = getattr(self, name)
            _require(isinstance(resources, dict), self.key(name), "must be a mapping")
            for res, amount in resources.items():
                _require(
                    isinstance(res, str) and bool(res),
                    self.key(name),
                    "resource names must be non-empty strings like CPU, GPU or my_resource",
                )
                _require(
                    isinstance(amount, (int, float))
                    and not isinstance(amount, bool)
                    and 0 <= amount < float("inf"),
                    f"{self.section}.{name}.{res}",
                    "must be a finite number >= 0",
                    amount,
                )
            _require(
                resources.get("CPU", 1) > 0 or any(v > 0 for v in resources.values()),
                self.key(name),
                "asks for nothing (a placement bundle cannot be empty): give one resource > 0",
            )
        _require(
            self.placement_strategy in PLACEMENT_STRATEGIES,
            self.key("placement_strategy"),
            one_of(PLACEMENT_STRATEGIES),
        )
        _require(
            0 < self.placement_timeout_s < float("inf"),
            self.key("placement_timeout_s"),
            "must be a finite number of seconds > 0",
        )


@dataclass(frozen=True)
class RunConfig(_Section):
    section: ClassVar[str] = ""
    task: str = ""
    """newsfeed, helpdesk or prompts (your JSONL file): its prompts, simulated audience and default
    model. Empty = prompts when prompts.path is set, else newsfeed."""
    seed: int = 0
    """Seed for sampling, prompts and persona draws."""
    out: str = "runs/latest"
    """Run directory: metrics.jsonl, reward_curve.png, checkpoint/, summary.json."""
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)

    def __post_init__(self) -> None:
        from rewardloop.tasks import DEFAULT_TASK, PROMPT_FILE_TASK, get_task, task_names

        if not self.task:  # frozen: resolve the automatic choice once, here
            object.__setattr__(
                self, "task", PROMPT_FILE_TASK if self.prompts.path else DEFAULT_TASK
            )
        _require(self.task in task_names(), self.key("task"), one_of(task_names()))
        reads_file = get_task(self.task).reads_prompts_section
        _require(
            reads_file or not self.prompts.path,
            self.prompts.key("path"),
            f"is read by task={PROMPT_FILE_TASK}, but task={self.task}; drop --set task or "
            f"set task={PROMPT_FILE_TASK}",
        )
        _require(
            not reads_file or bool(self.prompts.path),
            self.prompts.key("path"),
            f"task={self.task} needs a JSONL prompt file: --set prompts.path=FILE",
        )
        rewards = [sub for _, _, sub in self.reward.source_configs()] or [self.reward]
        _require(
            "persona" not in self.reward.kinds() or bool(get_task(self.task).audience),
            self.reward.key("kind"),
            f"persona is a task's simulated audience and task={self.task} has none; "
            "use function, http, grpc or human",
        )
        _require(
            all(r.kind != "human" or r.url for r in rewards) or self.feedback.autostart,
            "reward.url",
            "reward.kind=human needs reward.url (the gateway), or feedback.autostart=true to start one",
        )
        _require(
            not self.feedback.simulated_raters or bool(get_task(self.task).raters),
            self.feedback.key("simulated_raters"),
            f"task={self.task} has no simulated raters (helpdesk has): set it to 0",
        )
        groups = self.learner.groups_per_step * self.rollout.group_size
        _require(
            self.learner.buffer_capacity == 0 or self.learner.buffer_capacity >= groups,
            "learner.buffer_capacity",
            f"must hold one step's trajectories ({groups} = groups_per_step x group_size)",
        )
        _require(  # each worker holds one ingest stream (and one weight long-poll) open
            self.rollout.num_workers <= self.learner.max_streams,
            self.learner.key("max_streams"),
            f"must be >= rollout.num_workers ({self.rollout.num_workers}): each worker holds a "
            f"stream open; e.g. --set learner.max_streams={self.rollout.num_workers}",
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
