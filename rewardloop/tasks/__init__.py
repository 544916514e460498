"""The task registry: one module per task behind the `Task` interface (rewardloop.tasks.base).

A task supplies training and held-out prompts, its simulated audience (if it has one) and the
builder of its default model. Tasks are looked up by name; their modules are imported only when
used, so config validation can list the names without loading any task.

    task = get_task(cfg.task)
    prompts = task.prompts(cfg)           # PromptSource: .train and .evaluation
"""

from __future__ import annotations

import importlib

from rewardloop.errors import ConfigError

REGISTRY: dict[str, str] = {
    "newsfeed": "rewardloop.tasks.newsfeed",
    "helpdesk": "rewardloop.tasks.helpdesk",
    "prompts": "rewardloop.tasks.prompt_file",
}
"""Task name -> the module whose `TASK` attribute is its `Task`."""

DEFAULT_TASK = "newsfeed"
"""What `rewardloop train` runs when nothing is configured."""
PROMPT_FILE_TASK = "prompts"
"""What an empty `task` becomes when `prompts.path` is set."""


def task_names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def get_task(name: str):
    """The registered `Task` called `name`; ConfigError naming `task` otherwise."""
    if name not in REGISTRY:
        raise ConfigError(f"task: use one of {', '.join(REGISTRY)}, got {name!r}")
    return importlib.import_module(REGISTRY[name]).TASK
