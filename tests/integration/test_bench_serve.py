"""`rewardloop bench serve` runs end to end with tiny sizes and prints both figures and their
ratio for requests/s and p50 / p99 latency (no timing assertions)."""

from __future__ import annotations

import json
import math

import pytest

from rewardloop.bench import runner


def test_bench_serve_prints_both_figures(model_cache, capsys):
    pytest.importorskip("openai")
    argv = ["serve", "--json", "--repeats", "1", "--requests", "8", "--concurrency", "2"]
    assert runner.main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["benchmark"] == "serve"
    names = [c["name"] for c in data["comparisons"]]
    assert names == ["requests per second", "p50 latency", "p99 latency"]
    for c in data["comparisons"]:
        ours, base = c["ours"]["value"], c["baseline"]["value"]
        assert ours > 0 and base > 0 and math.isclose(c["ratio"], ours / base, rel_tol=1e-2)
