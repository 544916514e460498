"""The news-feed task: headlines for three readers, each with their own taste.

The prompt names the reader, so the policy must personalize; the simulated audience is the
readers themselves (`rewardloop.feedback.sim.personas`), its metric the like rate per reader.
"""

from __future__ import annotations

from rewardloop.config import RunConfig
from rewardloop.prompts import Prompt, PromptSource
from rewardloop.tasks.base import Task, cached_model


def _prompts(cfg: RunConfig) -> PromptSource:
    from . import prompts

    def convert(items):
        return [Prompt(p.text, p.reader) for p in items]

    return PromptSource(convert(prompts.train_prompts()), convert(prompts.eval_prompts()))


TASK = Task(
    name="newsfeed",
    description="headlines for simulated readers who each like two of six topics",
    prompts=_prompts,
    default_model=cached_model("rewardloop.tasks.newsfeed.build"),
    audience="rewardloop.feedback.sim.personas:PersonaReward",
    metric="like_rate",
    summary_section="readers",
)
