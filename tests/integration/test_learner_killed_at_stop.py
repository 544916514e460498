"""The learner SIGKILLed during the run's final stop, after training ended and the rollout pool
shut down. Ray restarts it; it comes back from the checkpoint of its last step (training
already done), is stopped, and records what is in flight; no worker ever talks to it. The run
still saves and accounts for every id: nothing lost, nothing trained twice. (What the dead
process answered after that checkpoint, if anything, is held in the spool answered only by it:
in flight at the end, cluster/accounting_join.py; test_spool_durable.py makes that case.)"""

from __future__ import annotations

import json
import os
import signal
import time

from rewardloop.config import load_config
from rewardloop.learner.accounting import IN_FLIGHT_FILE

STEPS = 8


def test_a_learner_killed_at_the_final_stop_leaves_nothing_lost(model_cache, ray_local, tmp_path):
    from rewardloop.cluster.run import Run

    cfg = load_config(
        None,
        [
            f"model.cache_dir={model_cache}",
            f"out={tmp_path}",
            f"learner.max_steps={STEPS}",
            "learner.checkpoint_every_steps=100",  # the only checkpoint: the last step's
            "learner.max_restarts=1",
            "eval.every_steps=0",
            "eval.samples_per_prompt=2",
            "eval.target=0",
            "rollout.num_workers=1",
        ],
    )
    run = Run(cfg, progress=False)
    try:
        run.prepare_and_connect()
        run.launch()
        run.watch()  # training is done
        assert len(run.steps) == STEPS and not run.error
        dead = run.calls("incarnation")
        run.scaler.stop()
        run.worker_stats = run.pool.shutdown()  # what stop() does first: no worker is left
        os.kill(dead["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 120
        while run.calls("incarnation", timeout_s=60)["pid"] == dead["pid"]:  # through restart
            assert time.monotonic() < deadline, "Ray did not restart the learner"
            time.sleep(0.2)  # polling the restart with a deadline
        run.stop()  # the restarted learner's stop writes the in-flight record
        run.save()
        summary = run.finish()
    finally:
        run.stop()
        run.close()
    record = json.loads((tmp_path / "audit" / IN_FLIGHT_FILE).read_text())
    assert record["incarnation"] not in ("", dead["incarnation"])  # the restarted process's
    acc = summary["accounting"]
    assert acc["lost"] == 0 and acc["outcome_conflicts"] == 0, acc
    generated = acc["trained"] + acc["stale"] + acc["expired"] + acc["rejected"]
    assert generated + acc["in_flight_at_end"] == acc["generated"]
