"""The driver's step records (cluster/run_steps.py) stay bounded in the run's length, and what
summary.json takes from them is what the full list of records gives."""

from __future__ import annotations

import json

from rewardloop import run_summary
from rewardloop.cluster.run_steps import RunSteps, from_metrics, reward_points


def _record(i: int) -> dict:
    return {
        "step": i + 1,
        "lag_mean": (i % 7) / 3,
        "skipped": float(i % 5 == 0),
        "reward_mean": i / 10,
        "reward_by_key": {"a": i / 100, "b": -i / 100},
        "time_s": i * 0.5,
        "wait_s": 0.1,
        "trajectories": 24 * (i + 1),
        "dropped_stale": i // 3,
        "wait_fraction": 0.25,
    }


def test_bounded_and_exact_totals():
    full = [_record(i) for i in range(5000)]
    steps = RunSteps(keep=64)
    steps.extend(full)
    assert len(steps) == 5000 and len(list(steps)) == 64  # the newest 64 only
    assert list(steps) == full[-64:] and steps[-1] == full[-1]
    assert steps[4990:] == full[4990:]  # a slice by absolute step index, as a list's
    want = run_summary.run_figures(full, [], 10.0)
    got = {**run_summary.run_figures(list(steps), [], 10.0), **steps.totals()}
    assert got == want


def test_ends_match_a_full_lists_head_and_tail():
    for n in (0, 3, 5, 8, 10, 300):
        full = [_record(i) for i in range(n)]
        steps = RunSteps(keep=16)
        steps.extend(full)
        ends = steps.ends(run_summary.TAIL_STEPS)
        assert ends[:5] == full[:5] and ends[-5:] == full[-5:]
        assert len(ends) == min(n, 10)
        evals = [{"metric": "train_reward"}, {"metric": "train_reward"}]
        got, want = (json.dumps(run_summary.eval_section(evals, x)) for x in (ends, full))
        assert got == want  # (as JSON: no steps gives NaN, which is not == itself)


def test_from_metrics_streams_a_resumed_runs_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [{"event": "eval", "step": 0, "metric": "m"}]
    lines += [_record(i) for i in range(2000)]
    lines += [{"event": "resume", "pid": 1}, {"event": "eval", "step": 2000, "metric": "m"}]
    lines += [{"event": "eval", "step": 2000, "checkpoint": "c", "metric": "m"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"torn": ')
    steps, evals = from_metrics(path, keep=32)
    assert len(steps) == 2000 and len(list(steps)) == 32 and steps.first == lines[1:6]
    assert evals == [{"step": 0, "metric": "m"}, {"step": 2000, "metric": "m"}]
    points = reward_points(path)
    assert [p["step"] for p in points] == list(range(1, 2001))
    assert points[7]["reward_by_key"] == _record(7)["reward_by_key"]
    assert from_metrics(tmp_path / "absent.jsonl")[0].totals()["steps"] == 0
