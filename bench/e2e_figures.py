"""Figures `bench e2e` takes from a run: its learner's step profile, and CPU seconds to target.

CPU seconds are what a shared machine cannot distort the way it distorts wall time: with
twenty other runnable processes a system of three processes (rewardloop's driver, learner and
worker) gets about three times the CPU share of a one-process loop, so its wall-time ratio
flatters it; CPU seconds to the target are the cost on an idle machine with enough cores.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from rewardloop.bench import common


def step_profile(path: Path, until_step: int | None) -> dict:
    """Where rewardloop's learner spent the steps up to the target (from metrics.jsonl)."""
    if not path.exists():
        return {}
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    steps = [
        r for r in records if "event" not in r and (until_step is None or r["step"] <= until_step)
    ]
    if not steps:
        return {}
    keys = ("wait_s", "forward_backward_s", "optimizer_s", "publish_s")
    last = steps[-1]
    return {
        "learner_train_s": round(last["time_s"], 2),
        "learner_wait_fraction": round(last["wait_fraction"], 3),
        "mean_step_s": round(last["time_s"] / len(steps), 4),
        "median_s": {k: round(common.median(r[k] for r in steps), 4) for k in keys},
        "lag_mean": round(sum(r["lag_mean"] for r in steps) / len(steps), 3),
        "dropped_stale": last.get("dropped_stale", 0),
        "evaluations": sum(
            1 for r in records if r.get("event") == "eval" and "checkpoint" not in r
        ),
    }


def descendants_cpu_s() -> float:
    """CPU seconds (user + system) of the live processes below this one (Linux /proc)."""
    parent: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(entry)], ticks[int(entry)] = int(fields[1]), int(fields[11]) + int(fields[12])
    mine, total = {os.getpid()}, 0
    grew = True
    while grew:
        grew = False
        for pid, ppid in parent.items():
            if ppid in mine and pid not in mine:
                mine.add(pid)
                total += ticks[pid]
                grew = True
    return total / os.sysconf("SC_CLK_TCK")


def cpu_since(cpu0: float, at_target: float | None) -> float | None:
    return None if at_target is None else round(at_target - cpu0, 2)
