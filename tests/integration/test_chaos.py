"""`rewardloop chaos` end to end on a real local Ray: one rollout worker and the learner are
SIGKILLed at random steps; the run finishes, the faults are reported with their pids, and the
accounting says nothing was lost and nothing trained twice."""

from __future__ import annotations

import random

from rewardloop.config import load_config


def test_schedule_spreads_faults_over_the_run():
    from rewardloop.cluster.chaos import schedule

    plan = schedule(random.Random(3), 2, 1, 60, None)
    assert sorted(f["kind"] for f in plan) == ["learner", "worker", "worker"]
    steps = [f["at_step"] for f in plan]
    assert steps == sorted(steps) and 9 <= steps[0] and steps[-1] <= 36
    timed = schedule(random.Random(3), 1, 1, 0, 100.0)
    assert all(10 <= f["at_s"] <= 90 for f in timed)


def test_a_small_chaos_run_loses_nothing(model_cache, ray_local, tmp_path):
    from rewardloop.cluster.chaos import chaos

    cfg = load_config(
        None,
        [
            f"model.cache_dir={model_cache}",
            "learner.max_steps=16",
            "learner.checkpoint_every_steps=4",
            "eval.every_steps=0",
            "eval.samples_per_prompt=2",
            "rollout.num_workers=1",
            f"out={tmp_path}",
        ],
    )
    report = chaos(cfg, kill_workers=1, kill_learner=1, seed=1)
    assert report["fault_failures"] == [] and report["error"] == "", report
    assert report["faults_by_kind"] == {"worker": 1, "learner": 1}
    assert all(f["pid"] > 0 and f["step"] >= 1 for f in report["faults"])
    assert report["steps"] == 16
    assert len(report["learner_restarts"]) == 1
    assert report["accounting"]["lost"] == 0 and report["trained_twice"] == 0, report
    assert (
        report["accounting"]["trained"] == 16 * cfg.learner.groups_per_step * cfg.rollout.group_size
    )
    assert report["rss"]["learner"] and all(r["samples"] >= 1 for r in report["rss"]["learner"])
    assert report["ok"] is True
