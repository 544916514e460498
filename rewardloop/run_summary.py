"""summary.json of a run, from its step records and evaluations (plain Python, no Ray).

The `eval` section reports the run's own metric: start (the base model), end (the saved
checkpoint) and both per key, plus the reward calls evaluation made. A task with a simulated
audience that is not what the run trains on gets `eval.audience` in the same shape, and a
task with a `summary_section` (the news feed's `readers`) lists the audience's figure per key
there, as `<metric>_start` / `<metric>_end`. A run whose reward is delayed and whose task has no
audience reports its training reward (first and last steps) as `train_reward`.
"""

from __future__ import annotations

import math

TAIL_STEPS = 5
"""Steps averaged for the start and end of a `train_reward` metric."""


def _mean(values: list[float]) -> float:
    values = [v for v in values if v == v]
    return sum(values) / len(values) if values else float("nan")


def train_reward_figures(steps: list[dict], first: bool) -> dict:
    """{"by_key", "mean"} of the training reward over the first or last TAIL_STEPS steps."""
    chosen = steps[:TAIL_STEPS] if first else steps[-TAIL_STEPS:]
    keys = sorted({k for s in chosen for k in s.get("reward_by_key", {})})
    rates = {
        k: _mean([s["reward_by_key"][k] for s in chosen if k in s.get("reward_by_key", {})])
        for k in keys
    }
    return {"by_key": rates, "mean": _mean([s.get("reward_mean", float("nan")) for s in chosen])}


def _section(metric: str, start: dict, end: dict) -> dict:
    keys = sorted(set(start["by_key"]) | set(end["by_key"]))
    return {
        "metric": metric,
        "start": start["mean"],
        "end": end["mean"],
        "by_key": {k: {"start": start["by_key"].get(k), "end": end["by_key"].get(k)} for k in keys},
        "noise_free": bool(start.get("noise_free")) and bool(end.get("noise_free")),
    }


def eval_section(evals: list[dict], steps: list[dict]) -> dict:
    """The `eval` section of summary.json from the first and last evaluation."""
    first, last = evals[0], evals[-1]
    metric = first["metric"]
    if metric == "train_reward":
        out = _section(
            metric, train_reward_figures(steps, True), train_reward_figures(steps, False)
        )
    else:
        out = _section(metric, first, last)
    calls = [e["reward_calls"] for e in evals if "reward_calls" in e]
    if calls:
        out["reward_calls"] = {
            k: round(sum(c[k] for c in calls), 4) for k in ("calls", "items", "errors", "seconds")
        }
    if "audience" in first and "audience" in last:
        out["audience"] = _section(first["audience"]["metric"], first["audience"], last["audience"])
    return out


def audience_by_key(section: dict, audience_metric: str) -> dict:
    """{key: {"<metric>_start": x, "<metric>_end": y}} from the eval section, for the task's
    summary_section; {} when the run has no audience figures."""
    figures = section if section["metric"] == audience_metric else section.get("audience")
    if not figures:
        return {}
    return {
        key: {f"{audience_metric}_start": v["start"], f"{audience_metric}_end": v["end"]}
        for key, v in figures["by_key"].items()
    }


def run_figures(steps: list[dict], worker_stats: list[dict], train_seconds: float) -> dict:
    """Throughput, lag, staleness and waiting of the training steps."""
    lags = [s["lag_mean"] for s in steps]
    trajectories = steps[-1]["trajectories"] if steps else 0
    return {
        "steps": len(steps),
        "train_seconds": round(train_seconds, 2),
        "trajectories": trajectories,
        "trajectories_per_s": round(trajectories / max(train_seconds, 1e-9), 2),
        "policy_lag_mean": sum(lags) / len(lags) if lags else 0.0,
        "dropped_stale": steps[-1]["dropped_stale"] if steps else 0,
        "learner_wait_fraction": steps[-1]["wait_fraction"] if steps else 0.0,
        "steps_skipped": sum(int(s["skipped"]) for s in steps),
        # bytes one weight version carries to workers (a LoRA run: its adapter only), and the
        # whole model's, for comparison
        "weight_bytes_per_version": steps[-1].get("publish_bytes") if steps else None,
        "full_weight_bytes": steps[-1].get("full_weight_bytes") if steps else None,
        "rollout_workers": worker_stats,
    }


def finite_or_none(value):
    """A number JSON can hold, or None (no figure: nothing was scored)."""
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None
