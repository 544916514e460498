"""Figures `bench e2e` takes from a run: its learner's step profile, and CPU seconds to target
(in all, and per component: driver, learner, workers, each of Ray's daemons).

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
    return sum(cpu for _, cpu in _descendants().values())


# What each of a run's processes is, by the head of its command line (`_cmdline`): the first
# fragment that matches wins
COMPONENTS = (
    ("ray::LearnerActor", "learner"),
    ("ray::RolloutActor", "workers"),
    ("gcs_server", "ray_gcs"),
    ("raylet/raylet", "ray_raylet"),
    ("dashboard/dashboard.py", "ray_dashboard_head"),
    ("DashboardAgent", "ray_dashboard_agent"),
    ("dashboard/agent.py", "ray_dashboard_agent"),
    ("RuntimeEnvAgent", "ray_runtime_env_agent"),
    ("runtime_env/agent", "ray_runtime_env_agent"),
    ("log_monitor.py", "ray_log_monitor"),
    ("autoscaler/_private/monitor.py", "ray_autoscaler_monitor"),
    ("ray::", "ray_other_workers"),
    ("default_worker.py", "ray_other_workers"),
)


def cpu_by_component(driver_cpu_s: float) -> dict[str, float]:
    """CPU seconds so far per component of a run: the driver (`driver_cpu_s`, this process's
    own) and its live descendants grouped by `COMPONENTS` ("other" for the rest)."""
    out = {"driver": round(driver_cpu_s, 2)}
    for cmdline, cpu in _descendants().values():
        name = next((n for frag, n in COMPONENTS if frag in cmdline), "other")
        out[name] = round(out.get(name, 0.0) + cpu, 2)
    return out


def component_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Per component, the CPU seconds between two `cpu_by_component` snapshots."""
    return {k: round(v - before.get(k, 0.0), 2) for k, v in after.items()}


def component_medians(runs: list[dict]) -> dict | None:
    """Over the runs that reached the target: the median CPU seconds of each component, for
    set-up, training and to target (None when no run has `cpu_by_component`)."""
    found = [r["cpu_by_component"] for r in runs if r.get("reached") and r.get("cpu_by_component")]
    if not found:
        return None
    return {
        phase: {
            key: round(common.median(f[phase].get(key, 0.0) for f in found), 2)
            for key in sorted({k for f in found for k in f[phase]})
        }
        for phase in ("setup", "training", "to_target")
    }


def _descendants() -> dict[int, tuple[str, float]]:
    """{pid: (command line, CPU seconds)} of the live processes below this one."""
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
    mine: set[int] = set()
    frontier = {os.getpid()}
    while frontier:
        frontier = {pid for pid, ppid in parent.items() if ppid in frontier and pid not in mine}
        mine |= frontier
    clock = os.sysconf("SC_CLK_TCK")
    return {pid: (_cmdline(pid), ticks[pid] / clock) for pid in mine}


def _cmdline(pid: int) -> str:
    """The program and its first two arguments (a Ray actor's title, or python's script): the
    rest can name other programs (the raylet's names the agents it starts)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:3]
    except OSError:
        return ""
    return " ".join(a.decode(errors="replace") for a in args)


def cpu_since(cpu0: float, at_target: float | None) -> float | None:
    return None if at_target is None else round(at_target - cpu0, 2)
