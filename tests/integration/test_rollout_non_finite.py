"""A NaN or inf reward is handled at the worker, promptly and counted (issue 14).

Before, the worker sent it on; the learner's ingest rejected it and the group's siblings then
waited `learner.group_timeout_s` in the buffer before being dropped as incomplete. Now the bad
member is dropped at the worker and the rest of its group is sent with `group_size` fixed up,
or dropped with it when fewer than 2 members remain. A real RolloutWorker and model, ListSink."""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter

import pytest
from feedback_testutil import run_bounded

from rewardloop.actors.rollout import RolloutWorker
from rewardloop.config import load_config
from rewardloop.feedback.sources.for_task import train_reward_source
from rewardloop.scoring import Score
from rewardloop.sink import ListSink
from rewardloop.tasks import get_task

G, PROMPTS, GENERATIONS = 4, 3, 3
# Requests come group by group: positions 0..3 are group 0, 4..7 group 1, 8..11 group 2.
# Group 0 loses one member (3 go on), group 1 three (1 left: dropped), group 2 none.
BAD = {0: math.nan, 4: math.inf, 5: -math.inf, 6: math.nan}


class NonFiniteRewards:
    """The task's own reward source, except that the items at BAD positions of every call get
    a non-finite reward; `delayed` answers everything later, through poll()."""

    def __init__(self, inner, delayed: bool):
        self.inner, self.delayed = inner, delayed
        self.bad_ids: set[str] = set()
        self.held: list[tuple[str, Score]] = []

    def score(self, items):
        scores = list(self.inner.score(items))
        for i, item in enumerate(items):
            if i in BAD:
                scores[i] = Score(BAD[i], source="flaky")
                self.bad_ids.add(item.id)
        if not self.delayed:
            return scores
        self.held += [(item.id, s) for item, s in zip(items, scores, strict=True)]
        return [None] * len(items)

    def poll(self, timeout_s: float = 0.0):
        held, self.held = self.held, []
        return held


class RecordingWorker(RolloutWorker):
    """Keeps every trajectory it generated, so the test knows each one's group."""

    def generate(self, n_groups=None):
        out = super().generate(n_groups)
        self.generated = [*getattr(self, "generated", []), *out]
        return out


@pytest.mark.parametrize("delayed", [False, True], ids=["immediate", "delayed"])
def test_non_finite_rewards_are_dropped_at_the_worker(model_cache, policy, delayed, caplog):
    cfg = load_config(
        None,
        [
            f"model.cache_dir={model_cache}",
            f"rollout.group_size={G}",
            f"rollout.prompts_per_generation={PROMPTS}",
            "rollout.max_new_tokens=4",
            "rollout.rpc_timeout_s=120",  # a wait for anything would outlast the join below
        ],
    )
    model, tokenizer = policy
    reward = NonFiniteRewards(train_reward_source(cfg, seed=1), delayed)
    sink = ListSink()
    worker = RecordingWorker(
        "w0", cfg, model, tokenizer, get_task(cfg.task).prompts(cfg), reward, sink, seed=1
    )
    with caplog.at_level(logging.WARNING, logger="rewardloop.actors.rollout"):
        counters = run_bounded(lambda: worker.run(threading.Event(), GENERATIONS), 60)

    sent = sink.sent
    assert counters["generations"] == GENERATIONS and not worker.pending
    assert all(math.isfinite(t.reward) for t in sent)
    assert not reward.bad_ids & {t.id for t in sent}
    members = Counter(t.group_id for t in sent)
    assert all(t.group_size == members[t.group_id] for t in sent)
    # Exactly what the pattern says, group by group, from what the worker generated.
    expected = {}
    for t in worker.generated:
        if t.id not in reward.bad_ids:
            expected[t.group_id] = expected.get(t.group_id, 0) + 1
    expected = {g: n for g, n in expected.items() if n >= 2}
    assert dict(members) == expected
    assert sorted(members.values()) == sorted([G - 1, G] * GENERATIONS)
    assert counters["non_finite_rewards"] == len(BAD) * GENERATIONS == len(reward.bad_ids)
    assert counters["groups_dropped"] == GENERATIONS
    assert counters["siblings_dropped"] == GENERATIONS  # group 1's one finite member
    assert counters["sent"] == len(sent) == (2 * G - 1) * GENERATIONS
    # Logged once, naming the source.
    warnings = [r.getMessage() for r in caplog.records if "non-finite" in r.getMessage()]
    assert len(warnings) == 1 and "'flaky'" in warnings[0]
