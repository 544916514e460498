"""`bench seeds` reads a run directory the way `rewardloop train` writes it: reached or not,
steps to the target, the lowest reader and how the run ended. Run directories here are written
by hand in the shape of metrics.jsonl / config.json / summary.json; the sweep itself (20 real
training runs) is the benchmark's business, not the test suite's."""

from __future__ import annotations

import json
from pathlib import Path

from rewardloop.bench import seeds


def write_run(out: Path, evals: list[tuple[int, dict]], steps: int, final: dict) -> None:
    out.mkdir(parents=True)
    lines = []
    for step, rates in evals:
        lines.append({"event": "eval", "step": step, "by_key": rates})
    for i in range(1, steps + 1):
        lines.append(
            {
                "step": i,
                "entropy": 0.5,
                "reward_mean": 0.4,
                "reward_by_key": {"alice": 0.1, "bob": 0.9},
                "advantage_abs_mean": 0.8,
                "completion_len": 12.0,
            }
        )
    lines.append({"event": "eval", "step": steps, "checkpoint": "ckpt", "by_key": final})
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (out / "config.json").write_text(json.dumps({"eval": {"target": 0.85}}))
    (out / "summary.json").write_text(
        json.dumps({"train_seconds": 12.5, "setup": {"total_s": 3.0}})
    )


def test_a_run_that_reached_reports_the_first_eval_over_the_target(tmp_path):
    write_run(
        tmp_path / "ok",
        [
            (0, {"alice": 0.3, "bob": 0.3}),
            (20, {"alice": 0.86, "bob": 0.84}),
            (40, {"alice": 0.87, "bob": 0.86}),
        ],
        steps=40,
        final={"alice": 0.88, "bob": 0.85},
    )
    r = seeds.read_run(tmp_path / "ok")
    assert r["reached"] is True and r["steps"] == 40  # step 20 had bob below the target
    assert r["lowest_reader"] == "bob" and r["lowest_rate"] == 0.85
    assert r["train_s"] == 12.5 and r["setup_s"] == 3.0


def test_a_stuck_reader_is_reported_with_how_the_run_ended(tmp_path):
    write_run(
        tmp_path / "stuck",
        [(0, {"alice": 0.3, "bob": 0.3}), (500, {"alice": 0.1, "bob": 0.9})],
        steps=500,
        final={"alice": 0.1, "bob": 0.9},
    )
    r = seeds.read_run(tmp_path / "stuck")
    assert r["reached"] is False and r["steps"] == 500
    assert r["lowest_reader"] == "alice" and r["end"]["lowest_reward"] == 0.1
    assert r["end"]["entropy"] == 0.5


def test_a_torn_last_line_of_a_killed_run_is_skipped(tmp_path):
    write_run(tmp_path / "torn", [(0, {"alice": 0.3}), (20, {"alice": 0.9})], 20, {"alice": 0.9})
    with (tmp_path / "torn" / "metrics.jsonl").open("a") as f:
        f.write('{"step": 21, "entropy": 0.')  # the process died inside this write
    r = seeds.read_run(tmp_path / "torn")
    assert r["reached"] is True and r["steps"] == 20 and r["steps_done"] == 20


def test_summary_counts_runs_that_never_started_apart(tmp_path):
    runs = [
        {
            "seed": 0,
            "reached": True,
            "steps": 300,
            "train_s": 20.0,
            "lowest_rate": 0.86,
            "loadavg_1m": [1.0, 1.0],
        },
        {
            "seed": 1,
            "reached": False,
            "steps": 500,
            "train_s": 40.0,
            "lowest_rate": 0.1,
            "loadavg_1m": [2.0, 2.0],
        },
        {"seed": 2, "reached": None, "loadavg_1m": [3.0, 3.0]},
    ]
    s = seeds.summarize(runs)
    assert s["reached"] == "1/2" and s["failed_seeds"] == [1]
    assert s["never_started_seeds"] == [2]
    assert s["steps_to_target"]["median"] == 300


def test_a_run_that_crashed_before_its_first_step_is_run_again(tmp_path, monkeypatch):
    """A worker that dies at start leaves metrics.jsonl with only the step-0 eval: that is not
    a learning failure (0 steps done), so the seed is run again; one that trained is kept."""
    attempts = []

    def train_once(seed, algorithm, overrides, out, timeout_s):
        attempts.append(out)
        steps = 0 if len(attempts) == 1 else 40
        write_run(out, [(0, {"alice": 0.3, "bob": 0.3})], steps, {"alice": 0.3, "bob": 0.3})
        res = {"seed": seed, **seeds.read_run(out)}
        if steps == 0:
            res["error"] = "rollout worker failed"
        return res

    monkeypatch.setattr(seeds, "_train_once", train_once)
    r = seeds.run_seed(2, "ppo", [], tmp_path / "run", 60.0, retries=2)
    assert len(attempts) == 2 and r["attempts"] == 2
    assert r["steps_done"] == 40 and "error" not in r
    assert r["end"]["entropy_first"] is None  # runs written before the metric existed
