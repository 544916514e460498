"""The checkpoint is the version that reached eval.target, though the learner trained on past
it and keeps only its newest version (cluster/actors.py RECENT_VERSIONS): the driver holds that
version's object ref, not a copy of the model. If the learner that put it is SIGKILLed before
the save, Ray restarts it, the ref is gone with the dead process, and the newest is saved."""

from __future__ import annotations

import json
import logging
import os
import signal
import time

from rewardloop.config import load_config
from rewardloop.learner.checkpoint import load_meta


def _cfg(model_cache, out, *extra):
    return load_config(
        None,
        [
            f"model.cache_dir={model_cache}",
            f"out={out}",
            "learner.max_steps=200",
            "eval.target=1e-9",  # reached by the first evaluation after step 0
            "eval.every_steps=3",
            "eval.samples_per_prompt=4",
            "rollout.num_workers=1",
            *extra,
        ],
    )


def _evals(out) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("event") == "eval"]


def test_the_checkpoint_is_the_version_that_reached_the_target(model_cache, ray_local, tmp_path):
    from rewardloop.cluster.run import train

    summary = train(_cfg(model_cache, tmp_path), progress=False)
    evals = _evals(tmp_path)
    target = next(e for e in evals if e["step"] > 0 and "checkpoint" not in e)
    final = evals[-1]
    assert "checkpoint" in final and summary["steps"] < 200
    meta = load_meta(tmp_path / "checkpoint")
    # the learner published newer versions before it stopped: the saved one is the target's
    assert meta["version"] == target["version"] < meta["learner_version"], meta
    # the checkpoint, loaded as a user would, samples exactly what the target version did
    assert final["by_key"] == target["by_key"] and final["examples"] == target["examples"]


def test_a_learner_killed_after_the_target_leaves_its_newest_weights_saved(
    model_cache, ray_local, tmp_path, caplog
):
    from rewardloop.cluster.run import Run

    run = Run(_cfg(model_cache, tmp_path, "learner.max_restarts=1"), progress=False)
    try:
        run.prepare_and_connect()
        run.launch()
        run.watch()
        assert run.target_version is not None and not run.error
        dead = run.calls("incarnation")["pid"]
        os.kill(dead, signal.SIGKILL)
        deadline = time.monotonic() + 120
        while run.calls("incarnation", timeout_s=60)["pid"] == dead:  # retried through restart
            assert time.monotonic() < deadline, "Ray did not restart the learner"
            time.sleep(0.2)  # polling the restart with a deadline
        run.stop()
        with caplog.at_level(logging.WARNING, logger="rewardloop.cluster.run"):
            run.save()
        assert run.target_version is None and "lost with its learner" in caplog.text
        meta = load_meta(run.checkpoint)
        assert meta["version"] == meta["learner_version"] >= 0, meta
    finally:
        run.stop()
        run.close()
