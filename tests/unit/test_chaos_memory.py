"""`rewardloop chaos`'s memory figures (cluster/chaos.py): VmRSS and its parts from /proc, and
the least-squares slope after the warm-up."""

from __future__ import annotations

import os

import pytest

from rewardloop.cluster.chaos import _memory_mib, memory_report, slope_per_1000


def test_memory_of_a_live_process_and_of_a_gone_one():
    mine = _memory_mib(os.getpid())
    assert set(mine) == {"rss", "anon", "shmem"}
    assert mine["rss"] > 0 and 0 < mine["anon"] <= mine["rss"] and mine["shmem"] <= mine["rss"]
    assert _memory_mib(2**22 + 12345) is None  # above pid_max: never a process


def test_slope_is_per_1000_steps_and_none_without_a_spread():
    assert slope_per_1000([0, 1000, 2000], [10.0, 12.0, 14.0]) == pytest.approx(2.0)
    assert slope_per_1000([5, 5], [1.0, 2.0]) is None and slope_per_1000([1], [1.0]) is None


def test_report_leaves_out_the_warm_up_from_the_slope():
    # a warm-up climb of 100 MiB over the first quarter, then anon flat and shmem +3 per 1,000
    samples = []
    for i in range(400):
        step = 10 * i
        warm = min(i, 100)
        shmem = 20 + 3 * step / 1000 if i >= 100 else 20.0
        samples.append((step, {"rss": 300 + warm + shmem, "anon": 200 + warm, "shmem": shmem}))
    report = memory_report(samples)
    assert report["samples"] == 400 and report["steps"] == [0, 3990]
    assert report["anon"]["slope_per_1000_steps"] == pytest.approx(0.0)
    assert report["shmem"]["slope_per_1000_steps"] == pytest.approx(3.0)
    assert report["anon"]["start_mib"] == 200 and report["anon"]["after_warmup_mib"] == 300
    assert report["rss"]["max_mib"] == pytest.approx(report["rss"]["end_mib"])
