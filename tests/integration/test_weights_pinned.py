"""The learner keeps only its newest version in the object store (cluster/actors.py
RECENT_VERSIONS): after a run's versions are published and fetched, the store holds about one
copy of the weights, not one per recent version; and a ref handed out before newer versions
came still reads, because its holder keeps it alive (Ray's reference counting)."""

from __future__ import annotations

import functools
import json
import time

from rewardloop.bench import runner
from rewardloop.cluster.object_store_bench import plasma_usage
from rewardloop.config import load_config


def test_a_run_leaves_about_one_copy_of_the_weights_in_the_object_store(
    model_cache, ray_local, tmp_path
):
    from rewardloop.cluster.run import Run

    cfg = load_config(
        None,
        [
            f"model.cache_dir={model_cache}",
            f"out={tmp_path}",
            "learner.max_steps=12",
            "eval.every_steps=0",
            "eval.samples_per_prompt=2",
            "rollout.num_workers=1",
        ],
    )
    before_mib, _ = plasma_usage()
    run = Run(cfg, progress=False)
    try:
        run.prepare_and_connect()
        run.launch()
        run.watch()  # to max_steps: 12 versions published, each fetched by the worker
        assert len(run.steps) == 12 and not run.error
        params = run.evaluator.model.parameters()
        version_mib = sum(p.numel() * p.element_size() for p in params) / 2**20
        # the registry's newest, and at most one more a worker still holds (released
        # asynchronously by Ray's reference counting: polled with a deadline)
        bound = 2 * version_mib + 1
        deadline = time.monotonic() + 30
        while (held := plasma_usage()[0] - before_mib) > bound:
            assert time.monotonic() < deadline, (
                f"the object store holds {held:.0f} MiB after the run's 12 versions of "
                f"{version_mib:.1f} MiB: more than {bound:.1f} (two versions)"
            )
            time.sleep(0.2)  # polling Ray's asynchronous release with a deadline
    finally:
        run.stop()
        run.close()


def test_a_ref_handed_out_still_reads_after_newer_versions(ray_local):
    from rewardloop.bench.weights import synthetic_state
    from rewardloop.cluster.object_store_bench import ObjectStoreFanout, local_ray

    make_state = functools.partial(synthetic_state, 2.0)
    with local_ray(num_cpus=2), ObjectStoreFanout(make_state, fetchers=1, num_cpus=0.5) as fan:
        fan.deliver(1, 1)
        version, (ref,) = ray_local.get(fan.publisher.latest_weights.remote(-1), timeout=60)
        for newer in (2, 3, 4):  # the registry forgets version 1 at the first of these
            fan.deliver(newer, 1)
        state = ray_local.get(ref, timeout=60)
        assert version == 1 and len(state) == len(make_state())
        assert all(t.numel() > 0 for t in state.values())


def test_the_pinned_bench_reports_both_registries(ray_local, capsys):
    argv = ["pinned", "--json", "--mb", "4", "--versions", "4", "--repeats", "1"]
    assert runner.main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    (comparison,) = data["comparisons"]
    assert data["figures"]["ours"]["runs"][0]["objects"] == 1
    assert data["figures"]["old"]["runs"][0]["objects"] == 4  # all 4 versions, kept 8
    assert 0 < comparison["ratio"] < 0.5
    assert ray_local.is_initialized()  # the benchmark left the Ray it found running
