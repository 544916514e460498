"""The object-store fan-out helper of `bench weights` (cluster/object_store_bench.py) on a real
local Ray: each delivery is timed and every fetcher holds the published version's tensors; the
benchmark itself prints its object-store comparison through the CLI runner."""

from __future__ import annotations

import functools
import json

import pytest

from rewardloop.bench import runner
from rewardloop.bench.weights import synthetic_state


def test_fanout_delivers_each_version_to_every_fetcher(ray_local):
    from rewardloop.cluster.object_store_bench import ObjectStoreFanout, local_ray

    make_state = functools.partial(synthetic_state, 0.2)
    with local_ray(num_cpus=2):  # attaches to the session's Ray and leaves it running
        with ObjectStoreFanout(make_state, fetchers=2, num_cpus=0.5, timeout_s=60) as fan:
            assert ray_local.get(fan.publisher.ready.remote()) == len(make_state())
            for version, k in ((1, 1), (2, 2), (3, 2)):
                assert 0 < fan.deliver(version, k) < 60
            with pytest.raises(ValueError, match="k: must be in 1..2"):
                fan.deliver(4, 3)
    assert ray_local.is_initialized()


def test_weights_bench_reports_the_object_store_fanout(ray_local, capsys):
    argv = ["weights", "--json", "--sizes", "0.2", "--workers", "1", "--repeats", "1"]
    assert runner.main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert "object_store" in data["settings"]["transports"]
    fanout = [c for c in data["comparisons"] if "object store" in c["name"]]
    assert len(fanout) == 1 and fanout[0]["goal"]["ratio_max"] == 2.0
    assert data["figures"]["0.2"]["by_workers"]["1"]["object_store"]["n"] == 1
    assert ray_local.is_initialized()  # the benchmark left the Ray it found running
