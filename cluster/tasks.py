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
    """The configured reward source (feedback.factory knows every kind)."""
    from rewardloop.feedback.factory import make_reward_source

    return make_reward_source(cfg, seed=seed)
