"""Smoke test of the benchmarks: the cheap ones run end to end with tiny sizes through the
runner the CLI calls, and print one JSON object whose comparisons carry both figures and their
ratio. No timing assertions: the figures themselves are the benchmarks' business."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from rewardloop.bench import common, runner


def run_json(capsys, argv: list[str]) -> dict:
    assert runner.main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1, "with --json, stdout must hold exactly one JSON line"
    return json.loads(out)


def check_comparisons(data: dict, name: str) -> None:
    assert data["benchmark"] == name
    assert data["machine"]["cpu_count"] >= 1 and "torch_threads" in data["machine"]
    assert data["comparisons"], "a benchmark without a comparison says nothing"
    for c in data["comparisons"]:
        ours, base = c["ours"]["value"], c["baseline"]["value"]
        assert ours > 0 and base > 0, c
        assert math.isclose(c["ratio"], ours / base, rel_tol=1e-2), c
        if "goal" in c:
            assert isinstance(c["goal"]["met"], bool)
            assert "ratio_min" in c["goal"] or "ratio_max" in c["goal"]


def test_ingest_prints_both_figures_and_ratio(capsys):
    data = run_json(capsys, ["ingest", "--json", "--trajectories", "64", "--repeats", "1"])
    check_comparisons(data, "ingest")
    goal = data["comparisons"][0]["goal"]
    assert goal["ratio_min"] == 0.5
    assert data["figures"]["grpc"]["trajectories"] == 64
    # the same bytes cross both transports (gRPC batches are serialized the same way)
    sizes = {data["figures"][k]["bytes"] for k in ("grpc", "tcp")}
    assert max(sizes) - min(sizes) < 0.01 * max(sizes)
    assert data["profile"]["server_us_per_trajectory"] > 0


def test_weights_prints_both_figures_and_ratio(capsys):
    argv = ["weights", "--json", "--sizes", "0.5", "--workers", "1,2", "--no-ray", "--repeats", "1"]
    data = run_json(capsys, argv)
    check_comparisons(data, "weights")
    names = [c["name"] for c in data["comparisons"]]
    assert sum("gRPC vs raw TCP" in n for n in names) == 2  # one per worker count
    fig = data["figures"]["0.5"]
    assert fig["bytes"] > 0.5e6 and set(fig["by_workers"]) == {"1", "2"}


def test_memory_measures_ours_and_the_old_path_in_fresh_processes(capsys):
    argv = ["memory", "--json", "--vocabs", "3000", "--seqs", "4", "--prompt", "4", "--tokens"]
    data = run_json(capsys, [*argv, "8", "--kinds", "ours,old", "--repeats", "1"])
    assert data["benchmark"] == "memory" and len(data["comparisons"]) == 1
    comparison = data["comparisons"][0]
    assert comparison["baseline"]["what"] == "old" and comparison["goal"]["ratio_max"] == 1.0
    assert set(data["figures"]["3000"]) == {"ours", "old"}  # small sizes: no figure asserted


def test_bench_never_imports_ray():
    """Runs go through cluster.run and object-store timings through cluster/object_store_bench:
    Ray lives in cluster/ only (DESIGN.md), so no benchmark starts or stops it itself."""
    bench_dir = Path(runner.__file__).parent
    pattern = re.compile(r"^\s*(import ray|from ray)\b", re.M)
    offenders = [p.name for p in sorted(bench_dir.glob("*.py")) if pattern.search(p.read_text())]
    assert offenders == []


def test_comparison_goal_directions():
    fast = common.comparison("x", ("a", 3.0, "MB/s"), ("b", 4.0, "MB/s"), ratio_min=0.5)
    assert fast["ratio"] == 0.75 and fast["goal"] == {"ratio_min": 0.5, "met": True}
    slow = common.comparison("y", ("a", 3.0, "s"), ("b", 1.0, "s"), ratio_max=2.0)
    assert slow["goal"]["met"] is False
    nan = common.comparison("z", ("a", float("nan"), "s"), ("b", 1.0, "s"), ratio_max=2.0)
    assert nan["goal"]["met"] is False  # a figure that could not be measured never meets a goal
    assert nan["ratio"] is None and nan["ours"]["value"] is None  # null in strict JSON


def test_emit_writes_strict_json(capsys):
    common.emit({"x": float("nan"), "y": [float("inf"), 1.5]}, as_json=True)
    assert json.loads(capsys.readouterr().out) == {"x": None, "y": [None, 1.5]}


def test_unknown_benchmark_is_refused(capsys):
    assert runner.main(["nope"]) == 2
    assert "unknown benchmark" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["ingest", "weights", "rollout", "learner", "e2e", "memory"])
def test_every_benchmark_has_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        runner.main([name, "--help"])
    assert exc.value.code == 0
    assert "--json" in capsys.readouterr().out
