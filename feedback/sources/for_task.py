"""The reward sources of a run, with the task filled in: what trains it and its audience.

`reward.kind: persona` means the task's own simulated audience (news-feed readers, help-desk
users); the task names it as `module:callable` (tasks may not import feedback/), resolved here.
Every other kind is the same for every task (`factory.make_reward_source`).
"""

from __future__ import annotations

from rewardloop.config import RewardConfig, RunConfig
from rewardloop.tasks import get_task

from .base import RewardSource
from .factory import make_reward_source
from .function_source import import_callable


def audience_factory(cfg: RunConfig):
    """(RewardConfig, seed) -> the task's simulated audience, or None if the task has none."""
    task = get_task(cfg.task)
    if not task.audience:
        return None
    build = import_callable(task.audience, key="task")

    def factory(reward: RewardConfig, seed: int) -> RewardSource:
        return build(reward, seed=seed)

    return factory


def audience_source(cfg: RunConfig, seed: int) -> RewardSource | None:
    """The task's simulated audience scoring with cfg.reward's probabilities, or None."""
    factory = audience_factory(cfg)
    return factory(cfg.reward, seed) if factory is not None else None


def train_reward_source(cfg: RunConfig, seed: int) -> RewardSource:
    """The configured reward source of a rollout worker (`persona` for a task without an
    audience never gets here: RunConfig refuses it, naming reward.kind)."""
    return make_reward_source(cfg, seed=seed, persona_factory=audience_factory(cfg))


def delayed(cfg: RunConfig) -> bool:
    """True when some part of the reward comes later (people rating through the gateway)."""
    return "human" in cfg.reward.kinds()


def only_audience(cfg: RunConfig) -> bool:
    """True when the configured reward is exactly the task's audience (`kind: persona`)."""
    return not cfg.reward.sources and cfg.reward.kind == "persona"
