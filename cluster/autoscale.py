"""`rollout.autoscale`: when to add or remove one rollout worker, from what the learner reports.

Plain Python (no Ray): `cluster/scaling.py` asks `decide()` from the driver's poll loop and
applies the answer. The signals:

- the learner's wait fraction over the last `window_steps` steps since the last change (seconds
  it waited for data / seconds those steps took): above `add_above_wait_fraction` the workers
  do not keep up, so add one;
- the buffer depth (trajectories held / learner buffer capacity): when the learner hardly waits
  (below `remove_below_wait_fraction`) and the buffer stays at least
  `remove_above_buffer_fraction` full, the workers make more than it trains on (the extra only
  grows stale), so remove one.

Only steps recorded after the last change count (they saw the new number of workers), and
nothing changes within `cooldown_s` of the last change, so one change is judged before the next.
"""

from __future__ import annotations

from rewardloop.config.rollout import AutoscaleConfig


def window_wait_fraction(steps: list[dict], window: int) -> float | None:
    """Waited seconds / elapsed seconds over the last `window` steps; None with fewer than
    window + 1 steps (the step before the window gives its start time)."""
    if window < 1 or len(steps) < window + 1:
        return None
    elapsed = steps[-1]["time_s"] - steps[-window - 1]["time_s"]
    waited = sum(s["wait_s"] for s in steps[-window:])
    return min(1.0, waited / elapsed) if elapsed > 0 else None


class Autoscaler:
    """`decide(workers, steps_since_change, buffer_fill, since_change_s)` -> the count to have."""

    def __init__(self, cfg: AutoscaleConfig):
        self.cfg = cfg
        self.last_reason = ""

    def decide(
        self, workers: int, steps: list[dict], buffer_fill: float, since_change_s: float
    ) -> int:
        """`steps`: step records since the last change; `buffer_fill` in [0, 1]. Returns
        `workers` (no change), workers + 1 or workers - 1, always within min..max_workers."""
        cfg = self.cfg
        if workers < cfg.min_workers:
            self.last_reason = f"below rollout.autoscale.min_workers={cfg.min_workers}"
            return cfg.min_workers
        if workers > cfg.max_workers:
            self.last_reason = f"above rollout.autoscale.max_workers={cfg.max_workers}"
            return cfg.max_workers
        if since_change_s < cfg.cooldown_s:
            return workers
        wait = window_wait_fraction(steps, cfg.window_steps)
        if wait is None:
            return workers
        if wait > cfg.add_above_wait_fraction and workers < cfg.max_workers:
            self.last_reason = (
                f"learner waited {wait:.2f} of the last {cfg.window_steps} steps "
                f"(> add_above_wait_fraction {cfg.add_above_wait_fraction})"
            )
            return workers + 1
        if (
            wait < cfg.remove_below_wait_fraction
            and buffer_fill >= cfg.remove_above_buffer_fraction
            and workers > cfg.min_workers
        ):
            self.last_reason = (
                f"learner waited {wait:.2f} (< remove_below_wait_fraction "
                f"{cfg.remove_below_wait_fraction}) with the buffer {buffer_fill:.2f} full"
            )
            return workers - 1
        return workers
