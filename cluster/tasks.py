"""Wiring of an example task: its prompt source, its reward source and its default model."""

from __future__ import annotations

from rewardloop.config import RunConfig
from rewardloop.errors import ConfigError
from rewardloop.prompts import Prompt, PromptSource


def prompt_source(cfg: RunConfig) -> PromptSource:
    if cfg.task == "newsfeed":
        from rewardloop.newsfeed import prompts

        def convert(items):
            return [Prompt(p.text, _reader_name(p)) for p in items]

        return PromptSource(convert(prompts.train_prompts()), convert(prompts.eval_prompts()))
    if cfg.task == "helpdesk":
        from rewardloop.helpdesk import prompts as hd_prompts

        return hd_prompts.prompt_source()
    raise ConfigError(f"task: unknown task {cfg.task!r}")


def _reader_name(prompt) -> str:
    reader = getattr(prompt, "reader", "")
    return getattr(reader, "name", reader)


def reward_source(cfg: RunConfig, seed: int):
    """The configured reward source (feedback.factory knows every kind); `persona` is the task's
    own simulated audience: news-feed readers, or help-desk users answering at once."""
    from rewardloop.feedback.factory import make_reward_source

    factory = None
    if cfg.task == "helpdesk":
        from rewardloop.feedback.helpdesk_users import HelpdeskUserReward

        factory = HelpdeskUserReward
    return make_reward_source(cfg, seed=seed, persona_factory=factory)


def eval_reward_source(cfg: RunConfig, seed: int):
    """What held-out evaluation scores with, whatever trains the policy: the task's simulated
    audience, noise-free (`expected()`), so runs with any reward kind compare on one footing."""
    if cfg.task == "helpdesk":
        from rewardloop.feedback.helpdesk_users import HelpdeskUserReward

        return HelpdeskUserReward(cfg.reward, seed=seed)
    if cfg.task == "newsfeed":
        from rewardloop.feedback.personas import PersonaReward

        return PersonaReward(cfg.reward, seed=seed)
    raise ConfigError(f"task: unknown task {cfg.task!r}")
