"""A pool of rollout actors that can be scaled up and down while the learner trains.

Start-up overlaps: `launch(n)` creates the actors before the learner has started, so each loads
its model while the learner loads its own; `start(endpoints)` then sets them running.

Given a `Placement`, each worker takes a free bundle of the run's placement group (a worker
stopped by `scale` frees its bundle for the next one); workers beyond the group's bundles are
scheduled outside it with the same `cluster.rollout_resources`.
"""

from __future__ import annotations

import logging

import ray

from rewardloop.config import RunConfig, buffer_capacity

from .actors import RolloutActor
from .placement import Placement, rollout_options

log = logging.getLogger(__name__)


class RolloutPool:
    def __init__(
        self,
        cfg: RunConfig,
        learner,
        endpoints: dict | None = None,
        placement: Placement | None = None,
    ):
        self.cfg = cfg
        self.learner = learner
        self.endpoints = endpoints
        self.placement = placement
        # (worker_id, actor, run() ref or None while launched but not started)
        self.workers: list[tuple[str, object, ray.ObjectRef | None]] = []
        self.slots: dict[str, int | None] = {}  # worker_id -> its bundle (None = outside)
        self._next_id = 0

    def launch(self, n: int) -> None:
        """Create actors until n exist, without running them (they load their model now)."""
        while len(self.workers) < n:
            worker_id = f"worker-{self._next_id}"
            seed = self.cfg.seed * 1000 + self._next_id + 1
            self._next_id += 1
            actor = RolloutActor.options(**self._options(worker_id)).remote(
                worker_id, self.cfg, self.learner, seed
            )
            self.workers.append((worker_id, actor, None))

    def _options(self, worker_id: str) -> dict:
        if self.placement is None:
            return rollout_options(self.cfg)
        taken = {self.slots.get(wid) for wid, _, _ in self.workers}
        free = [i for i in range(self.placement.worker_slots) if i not in taken]
        self.slots[worker_id] = free[0] if free else None
        return self.placement.rollout_options(self.slots[worker_id])

    def start(self, endpoints: dict) -> None:
        """Run every launched actor against the learner at `endpoints`."""
        self.endpoints = endpoints
        self.workers = [
            (wid, actor, ref if ref is not None else actor.run.remote(endpoints))
            for wid, actor, ref in self.workers
        ]

    def scale(self, n: int) -> None:
        """Start or stop workers until n are running. Stopped workers finish their generation."""
        if self.endpoints is None:
            raise RuntimeError("RolloutPool.scale: start(endpoints) first")
        self.launch(n)
        self.start(self.endpoints)
        while len(self.workers) > n:
            worker_id, actor, run_ref = self.workers.pop()
            self._stop_one(actor, run_ref)

    def _stop_one(self, actor, run_ref, timeout_s: float | None = None) -> dict | None:
        timeout_s = timeout_s or self.cfg.rollout.rpc_timeout_s + 5
        try:
            ray.get(actor.stop.remote(), timeout=timeout_s)
            return ray.get(run_ref, timeout=timeout_s) if run_ref is not None else None
        except Exception as exc:  # a dead or stuck worker must not block shutdown
            log.warning("rollout worker did not stop cleanly: %s", exc)
            return None
        finally:
            ray.kill(actor)

    def failed(self) -> list[str]:
        """Workers whose run() ended with an error (checked without blocking)."""
        errors = []
        for worker_id, _, ref in self.workers:
            if ref is None:
                continue
            ready, _ = ray.wait([ref], timeout=0)
            if ready:
                try:
                    ray.get(ready[0])
                except Exception as exc:
                    errors.append(f"{worker_id}: {exc}")
        return errors

    def actors(self) -> list:
        """The actor handles of every worker (launched or running)."""
        return [actor for _, actor, _ in self.workers]

    def stats(self) -> list[dict]:
        refs = [actor.stats.remote() for _, actor, _ in self.workers]
        return ray.get(refs, timeout=self.cfg.rollout.rpc_timeout_s)

    def shutdown(self) -> list[dict]:
        results = []
        for _, actor, _ in self.workers:
            actor.stop.remote()
        for _, actor, ref in self.workers:
            results.append(self._stop_one(actor, ref))
        self.workers.clear()
        return [r for r in results if r]


def idle_workers_hint(cfg: RunConfig) -> str:
    """A hint when more rollout workers are asked for than the staleness budget can keep busy
    (each holds credits for at least one whole group at a time); "" when they all fit."""
    groups = buffer_capacity(cfg) // cfg.rollout.group_size
    if cfg.rollout.num_workers <= groups:
        return ""
    return (
        f"rollout.num_workers={cfg.rollout.num_workers} but the learner admits only {groups} "
        f"groups in flight (groups_per_step x max(1, learner.max_staleness)), so "
        f"{cfg.rollout.num_workers - groups} worker(s) wait idle at any moment; raise "
        "learner.max_staleness (e.g. --set learner.max_staleness=4) to keep them busy"
    )
