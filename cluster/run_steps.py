"""The driver's step records, bounded in the run's length: the count, the first few, the newest.

`Run` used to keep every step record it fetched (`self.steps`, a list), for the whole run: a
soak of 10^5 steps held some hundreds of MB in the driver. The records' home is metrics.jsonl
(the driver writes each one as it fetches it), so `RunSteps` keeps only what the driver reads
while the run goes on, and the exact totals summary.json reports:

    len(steps), steps[i:], steps[-1], iter(steps)   as learner/step_log.py `StepLog` (the newest
                                                    `keep`: the autoscaler's window since a change)
    steps.ends(n)       the first n records and the newest n (summary.json's `train_reward`)
    steps.totals()      `steps`, `policy_lag_mean`, `steps_skipped` over every step

`from_metrics` rebuilds one (and the evaluations) from a resumed run's metrics.jsonl, line by
line. reward_curve.png, which plots every step, reads its points from metrics.jsonl at the end
(`reward_points`: two small fields per step, not the records).
"""

from __future__ import annotations

from pathlib import Path

from rewardloop.learner.step_log import StepLog
from rewardloop.run_outputs import iter_records

KEEP = 1024
FIRST = 5  # rewardloop.run_summary.TAIL_STEPS: the start of a `train_reward` metric


def keep_for(cfg) -> int:
    """Records a run's driver keeps: KEEP, or more when the autoscaler's window needs them."""
    return max(KEEP, cfg.rollout.autoscale.window_steps + 1)


class RunSteps(StepLog):
    """Not thread-safe beyond StepLog's own lock: the driver's poll loop appends."""

    def __init__(self, keep: int = KEEP, first: int = FIRST):
        super().__init__(keep)
        self._first_n = first
        self.first: list[dict] = []
        self._lag_sum = 0.0
        self._skipped = 0

    def append(self, record: dict) -> None:
        if len(self.first) < self._first_n:
            self.first.append(record)
        self._lag_sum += float(record.get("lag_mean", 0.0))
        self._skipped += int(record.get("skipped", 0))
        super().append(record)

    def extend(self, records) -> None:
        for record in records:
            self.append(record)

    def ends(self, n: int = FIRST) -> list[dict]:
        """The first min(n, FIRST) records, then the newest n that are not among them: what
        `lst[:n]` and `lst[-n:]` of the full list would give."""
        head = self.first[:n]
        newest = self[max(len(head), len(self) - n) :]
        return head + newest

    def totals(self) -> dict:
        """The figures of run_summary.run_figures that need every step, exact."""
        n = len(self)
        return {
            "steps": n,
            "policy_lag_mean": self._lag_sum / n if n else 0.0,
            "steps_skipped": self._skipped,
        }


def from_metrics(path: Path, keep: int = KEEP) -> tuple[RunSteps, list[dict]]:
    """(step records, evaluations) a resumed run's metrics.jsonl already holds, read line by
    line into a bounded `RunSteps` (evaluations are few: one per `eval.every_steps`)."""
    steps, evals = RunSteps(keep), []
    for r in iter_records(path):
        if "event" not in r:
            steps.append(r)
        elif r.get("event") == "eval" and "checkpoint" not in r:
            r.pop("event", None)
            evals.append(r)
    return steps, evals


def reward_points(path: Path) -> list[dict]:
    """{"step", "reward_by_key"} of every step record in metrics.jsonl: what
    rewardloop.run_outputs.plot_reward_curve reads of them."""
    return [
        {"step": r.get("step", 0), "reward_by_key": r.get("reward_by_key", {})}
        for r in iter_records(path)
        if "event" not in r
    ]
