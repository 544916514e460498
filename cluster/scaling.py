"""Scaling the rollout workers while the run trains: `rewardloop scale` and `rollout.autoscale`.

    scaler = Scaler(cfg, pool, learner)
    url = scaler.start()                # the control endpoint (cluster/control.py), or ""
    ... every poll of the driver:  events = scaler.tick(len(steps), steps)
    scaler.stop()

`tick` runs on the driver's thread, between its polls of the learner: it collects retired
workers (`RolloutPool.reap`), removes added workers the cluster could not place within
`cluster.placement_timeout_s`, applies the newest request from the control endpoint, else asks
the autoscaler, and publishes the pool's state for `GET /workers`. Every change sets the
learner's `workers` gauge and comes back as an event (`{"event": "scale", "step", "from",
"to", "by", "reason"}`) that the driver writes to metrics.jsonl; each step record there
carries the pool's size as `workers`.
"""

from __future__ import annotations

import logging
import time

import ray

from rewardloop.auth import resolve_token
from rewardloop.config import RunConfig, buffer_capacity, replace

from .autoscale import Autoscaler
from .control import MAX_WORKERS, ControlServer, ScaleRequests
from .pool import RolloutPool, idle_workers_hint

log = logging.getLogger(__name__)
STATUS_TIMEOUT_S = 30.0


class Scaler:
    def __init__(self, cfg: RunConfig, pool: RolloutPool, learner):
        self.cfg = cfg
        self.pool = pool
        self.learner = learner
        auto = cfg.rollout.autoscale
        self.requests = ScaleRequests(max_workers=MAX_WORKERS)
        self.autoscaler = Autoscaler(auto) if auto.enabled else None
        self.server: ControlServer | None = None
        self.events: list[dict] = []
        self.error = ""  # the latest change that could not be carried out, for GET /workers
        self._changed_at = time.monotonic()
        self._steps_at_change = 0

    def start(self) -> str:
        """Serve the control endpoint (cluster.control_port; -1: none, returns "")."""
        cc = self.cfg.cluster
        if cc.control_port == -1:
            return ""
        self.server = ControlServer(
            self.requests,
            host=cc.control_host,
            port=cc.control_port,
            token=resolve_token(self.cfg.learner.token, "learner.token"),
            allow_insecure=self.cfg.learner.allow_insecure,
        )
        url = self.server.start()
        self._publish(0)
        return url

    def tick(self, n_steps: int, steps: list[dict]) -> list[dict]:
        """One look: collect, time out, apply a request or an autoscale decision. Returns the
        events of the changes made now (also kept in `self.events`)."""
        self.pool.reap()
        new: list[dict] = []
        unplaced = self.pool.unplaced(self.cfg.cluster.placement_timeout_s)
        if unplaced:
            self.error = (
                f"worker(s) {', '.join(unplaced)} not placed within "
                f"cluster.placement_timeout_s={self.cfg.cluster.placement_timeout_s:g}: the "
                f"cluster lacks room for cluster.rollout_resources; the pool has {self.pool.size}"
            )
            log.warning(self.error)
            new.append(self._event(n_steps, self.pool.size + len(unplaced), "unplaced"))
            self._set_gauge()
        wanted, by, reason = self.requests.take(), "scale", "rewardloop scale"
        if wanted is None and self.autoscaler is not None:
            wanted, by = self._autoscale(steps[self._steps_at_change :]), "autoscale"
            reason = self.autoscaler.last_reason
        if wanted is not None and wanted != self.pool.size:
            new.append(self.apply(wanted, n_steps, by, reason))
        self._publish(n_steps)
        return new

    def apply(self, n: int, n_steps: int, by: str = "scale", reason: str = "") -> dict:
        """Scale the pool to n now; the event of the change."""
        before = self.pool.size
        hint = idle_workers_hint(replace(self.cfg, rollout={"num_workers": n}))
        if hint and n > before:
            log.warning(hint)
        self.pool.scale(n)
        self.error = ""
        self._changed_at, self._steps_at_change = time.monotonic(), n_steps
        self._set_gauge()
        log.info("rollout workers %d -> %d (%s: %s)", before, n, by, reason)
        event = self._event(n_steps, before, by, reason)
        return event

    def running(self) -> int:
        """Workers in the pool that are up (added ones count once their model has loaded)."""
        return self.pool.size - len(self.pool.starting())

    @property
    def stop_requested(self) -> bool:
        """`rewardloop stop RUN_DIR` (POST /stop) asked the run to end training now."""
        return self.requests.stop_requested.is_set()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def _event(self, n_steps: int, before: int, by: str, reason: str = "") -> dict:
        event = {
            "event": "scale",
            "step": n_steps,
            "from": before,
            "to": self.pool.size,
            "by": by,
            "reason": reason or self.error,
        }
        self.events.append(event)
        return event

    def _autoscale(self, steps: list[dict]) -> int | None:
        since = time.monotonic() - self._changed_at
        if since < self.cfg.rollout.autoscale.cooldown_s or self.pool.starting():
            return None  # a change is still being judged, or an added worker is loading
        try:
            status = ray.get(self.learner.status.remote(), timeout=STATUS_TIMEOUT_S)
        except (ray.exceptions.RayError, TimeoutError) as exc:  # a learner restarting: next tick
            log.info("autoscale: no learner status now (%s)", exc)
            return None
        fill = status["buffer"].get("size", 0) / max(1, buffer_capacity(self.cfg))
        return self.autoscaler.decide(self.pool.size, steps, fill, since)

    def _set_gauge(self) -> None:
        self.learner.set_driver_metrics.remote(workers=self.pool.size)

    def _publish(self, n_steps: int) -> None:
        starting = self.pool.starting()
        self.requests.publish(
            {
                "target": self.pool.size,
                "running": self.pool.size - len(starting),
                "starting": len(starting),
                "retiring": len(self.pool.retiring),
                "retired": len(self.pool.retired),
                "step": n_steps,
                "autoscale": self.autoscaler is not None,
                "error": self.error,
                "events": self.events[-20:],
            }
        )
