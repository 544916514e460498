"""Placement: a request the cluster cannot meet stops the run within cluster.placement_timeout_s
with an error naming the short resource, the cluster's figures and the key to change, and
leaves no placement group or actor behind."""

from __future__ import annotations

import time

import pytest

from rewardloop.config import load_config
from rewardloop.errors import ConfigError

FAST = [
    "learner.max_steps=2",
    "eval.every_steps=0",
    "eval.samples_per_prompt=2",
    "rollout.num_workers=1",
    "cluster.placement_timeout_s=2",
]


def _live_groups(ray) -> list[str]:
    table = ray.util.placement_group_table()
    return [gid for gid, g in table.items() if g["state"] != "REMOVED"]


def _wait_until(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)  # polling a condition with a deadline


@pytest.mark.parametrize(
    ("override", "names"),
    [
        ("cluster.learner_resources={CPU: 64}", ["CPU", "needs 65", "cluster.learner_resources"]),
        (
            "cluster.rollout_resources={no_such_resource: 1}",
            ["no_such_resource", "has 0", "cluster.rollout_resources"],
        ),
        ("cluster.placement_strategy=STRICT_SPREAD", ["STRICT_SPREAD", "1 node(s)"]),
    ],
)
def test_an_unplaceable_run_stops_promptly_and_leaves_nothing(
    model_cache, ray_local, tmp_path, override, names
):
    from rewardloop.cluster.run import Run

    ray = ray_local
    cpus = ray.cluster_resources()["CPU"]
    cfg = load_config(None, [f"model.cache_dir={model_cache}", f"out={tmp_path}", *FAST, override])
    run = Run(cfg, progress=False)
    run.prepare()  # the model build is not part of the placement wait
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        try:
            run.connect()
            run.launch()
        finally:
            run.close()
    assert time.monotonic() - started < 30
    message = str(caught.value)
    for name in [*names, "cluster.placement_timeout_s=2", "The cluster has"]:
        assert name in message, message
    assert run.learner is None and run.pool is None  # no actor was created
    _wait_until(lambda: not _live_groups(ray), 30, "the placement group to go")
    _wait_until(lambda: ray.available_resources().get("CPU", 0) == cpus, 30, "CPUs to be free")


def test_a_placed_run_reports_where_each_actor_went(model_cache, ray_local, tmp_path):
    from rewardloop.cluster.run import Run

    ray = ray_local
    extra = ["cluster.learner_resources={CPU: 0.5}", "cluster.rollout_resources={CPU: 0.5}"]
    cfg = load_config(None, [f"model.cache_dir={model_cache}", f"out={tmp_path}", *FAST, *extra])
    summary = Run(cfg, progress=False).execute()
    placement = summary["placement"]
    node = ray.get_runtime_context().get_node_id()
    assert placement["learner"]["node_id"] == node
    assert placement["learner"]["resources"] == {"CPU": 0.5}
    assert [w["worker_id"] for w in placement["workers"]] == ["worker-0"]
    assert placement["workers"][0]["node_id"] == node
    _wait_until(lambda: not _live_groups(ray), 30, "the placement group to go")


def test_scaling_reuses_freed_bundles_and_goes_outside_the_group_when_full(
    model_cache, ray_local, tmp_path
):
    from rewardloop.cluster.run import Run

    ray = ray_local
    extra = [
        "cluster.learner_resources={CPU: 0.5}",
        "cluster.rollout_resources={CPU: 0.5}",
        "learner.max_steps=3",
        "cluster.placement_timeout_s=60",  # worker-2 waits for worker-0's bundle to be freed
    ]
    cfg = load_config(None, [f"model.cache_dir={model_cache}", f"out={tmp_path}", *FAST, *extra])
    run = Run(cfg, progress=False)
    try:
        run.prepare()
        run.connect()
        run.launch()
        pool = run.pool
        assert pool.slots == {"worker-0": 0}
        pool.scale(2)  # the group has one worker bundle: worker-1 is placed outside it
        assert pool.slots["worker-1"] is None
        pool.scale(0)  # retiring workers keep their bundle until they have exited
        _wait_until(lambda: not (pool.reap() or pool.retiring), 120, "the workers to retire")
        pool.scale(1)  # worker-0 freed bundle 0: the next worker takes it
        assert pool.slots["worker-2"] == 0
        run.watch()
        run.stop()
        assert not run.error and len(run.steps) == 3
    finally:
        run.stop()
        run.close()
    _wait_until(lambda: not _live_groups(ray), 30, "the placement group to go")
