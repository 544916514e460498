"""The help-desk task: answer customer questions in six categories, rated "was this helpful?".

The simulated audience is the help-desk users (`rewardloop.feedback.sim.helpdesk_users`), who
answer at once with `reward.kind: persona` or rate later through the gateway with
`reward.kind: human`; its metric is the helpful rate per category.
"""

from __future__ import annotations

from rewardloop.config import RunConfig
from rewardloop.prompts import PromptSource
from rewardloop.tasks.base import Task, cached_model


def _prompts(cfg: RunConfig) -> PromptSource:
    from .prompts import prompt_source

    return prompt_source()


TASK = Task(
    name="helpdesk",
    description="customer questions in six categories, answers rated helpful or not",
    prompts=_prompts,
    default_model=cached_model("rewardloop.tasks.helpdesk.build"),
    audience="rewardloop.feedback.sim.helpdesk_users:HelpdeskUserReward",
    raters="rewardloop.feedback.sim.helpdesk_users:HelpdeskUser",
    metric="helpful_rate",
    summary_section="categories",
)
