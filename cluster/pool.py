"""A pool of rollout actors that can be scaled up and down while the learner trains.

Start-up overlaps: `launch(n)` creates the actors before the learner has started, so each loads
its model while the learner loads its own; `start(endpoints)` then sets them running.

Given a `Placement`, each worker takes a free bundle of the run's placement group (a worker
stopped by `scale` frees its bundle for the next one); workers beyond the group's bundles are
scheduled outside it with the same `cluster.rollout_resources`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import ray

from rewardloop.config import RunConfig, buffer_capacity

from .actors import RolloutActor
from .placement import Placement, rollout_options
from .restarts import RUN, WAIT, RestartBook, actor_state

log = logging.getLogger(__name__)
DRAIN_GRACE_S = 10.0  # beyond 2 x rollout.rpc_timeout_s: a retiring worker's last generation


@dataclass
class _Retiring:
    """A worker `scale` removed: it finishes its generation and sends it, then `reap` kills it."""

    worker_id: str
    actor: object
    run_ref: ray.ObjectRef | None
    deadline: float
    aborted: bool = False


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
        self.retiring: list[_Retiring] = []  # removed by scale(), still sending their last groups
        self.retired: list[dict] = []  # their final counters (worker_id included), for summary.json
        self._ready: dict[str, tuple[ray.ObjectRef, float]] = {}  # added by scale: (ready(), since)
        self.restarts = RestartBook(cfg.rollout.max_restarts)  # dead workers: restarts.py
        self._reported: set[ray.ObjectRef] = set()  # run() refs of deaths past the restarts

    def launch(self, n: int) -> None:
        """Create actors until n exist, without running them (they load their model now)."""
        while len(self.workers) < n:
            worker_id = f"worker-{self._next_id}"
            seed = self.cfg.seed * 1000 + self._next_id + 1
            self._next_id += 1
            options = {**self._options(worker_id), **self.restarts.actor_options()}
            actor = RolloutActor.options(**options).remote(worker_id, self.cfg, self.learner, seed)
            self.workers.append((worker_id, actor, None))

    def _options(self, worker_id: str) -> dict:
        if self.placement is None:
            return rollout_options(self.cfg)
        taken = {self.slots.get(wid) for wid, _, _ in self.workers}
        taken |= {self.slots.get(r.worker_id) for r in self.retiring}  # bundle held until it exits
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

    def follow(self, endpoints: dict) -> None:
        """The learner serves at `endpoints` now (Ray restarted it; its old port may have been
        taken, so the ports may be new): workers given `run` from now on get them, and if the
        address moved, every worker is told (`RolloutActor.follow`; an `epoch` that only grows
        orders the moves), so that in-cluster workers follow it as external ones follow
        endpoints.json."""
        old = self.endpoints or {}
        if all(old.get(k) == endpoints.get(k) for k in ("ingest", "weights")):
            self.endpoints = {**endpoints, "epoch": old.get("epoch", 0)}
            return
        self.endpoints = {**endpoints, "epoch": old.get("epoch", 0) + 1}
        log.warning("learner moved to %s: telling the rollout workers", endpoints.get("ingest"))
        for actor in self.actors():
            actor.follow.remote(self.endpoints)

    @property
    def size(self) -> int:
        """Workers in the pool (launched or running; retiring ones are no longer counted)."""
        return len(self.workers)

    def scale(self, n: int) -> None:
        """Add or retire workers until n are in the pool, without blocking. Added workers load
        their model and start (`starting()` lists those not ready yet); the newest are retired
        first: each finishes its generation and sends it and whatever else it holds (the
        stream stays open), then `reap()` collects its counters and kills it."""
        if self.endpoints is None:
            raise RuntimeError("RolloutPool.scale: start(endpoints) first")
        if n < 0:
            raise ValueError(f"RolloutPool.scale: n must be >= 0, got {n}")
        before = {wid for wid, _, _ in self.workers}
        self.launch(n)
        self.start(self.endpoints)
        for worker_id, actor, _ in self.workers:
            if worker_id not in before:
                self._ready[worker_id] = (actor.ready.remote(), time.monotonic())
        while len(self.workers) > n:
            self.retire(*self.workers.pop())

    def retire(self, worker_id: str, actor, run_ref) -> None:
        """Ask one worker (already out of `workers`) to drain and exit; `reap()` collects it."""
        self._ready.pop(worker_id, None)
        actor.drain.remote()
        deadline = time.monotonic() + 2 * self.cfg.rollout.rpc_timeout_s + DRAIN_GRACE_S
        self.retiring.append(_Retiring(worker_id, actor, run_ref, deadline))

    def starting(self) -> list[str]:
        """Workers added by `scale` whose model has not finished loading (checked, no wait)."""
        for worker_id, (ref, _) in list(self._ready.items()):
            if ray.wait([ref], timeout=0)[0]:
                del self._ready[worker_id]
        return list(self._ready)

    def unplaced(self, timeout_s: float) -> list[str]:
        """Remove (and kill) workers added by `scale` that are still not placed after
        `timeout_s`: the cluster has no room for them (cluster.rollout_resources). A worker the
        GCS has ALIVE is placed, only still loading its model: it stays. Returns their ids."""
        now, gone = time.monotonic(), []
        for worker_id in self.starting():
            if now - self._ready[worker_id][1] < timeout_s:
                continue
            entries = [w for w in self.workers if w[0] == worker_id]
            if entries and actor_state(entries[0][1])[0] == "ALIVE":
                continue
            del self._ready[worker_id]
            for entry in entries:
                self.workers.remove(entry)
                ray.kill(entry[1])
            gone.append(worker_id)
        return gone

    def reap(self) -> list[str]:
        """Collect retiring workers that have exited (their counters go to `retired`). One past
        its deadline is aborted (its sends return), then killed a grace later. No waiting."""
        done = []
        for r in list(self.retiring):
            finished = r.run_ref is None or bool(ray.wait([r.run_ref], timeout=0)[0])
            if not finished and time.monotonic() < r.deadline:
                continue
            if not finished and not r.aborted:
                log.warning("rollout worker %s: still draining; aborting its sends", r.worker_id)
                r.actor.stop.remote()
                r.aborted, r.deadline = True, time.monotonic() + DRAIN_GRACE_S
                continue
            counters: dict = {}
            if finished and r.run_ref is not None:
                try:
                    counters = ray.get(r.run_ref, timeout=self.cfg.rollout.rpc_timeout_s)
                except Exception as exc:  # noqa: BLE001 - a retired worker's error ends only it
                    log.warning("rollout worker %s ended with an error: %s", r.worker_id, exc)
                    counters = {"error": str(exc)}
            ray.kill(r.actor)
            self.retiring.remove(r)
            self.retired.append({"worker_id": r.worker_id, "retired": True, **counters})
            done.append(r.worker_id)
        return done

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
        """Workers whose run() ended with an error, or that died past rollout.max_restarts
        (checked without blocking). A worker that died with restarts left is not failed: Ray
        restarts its process and it is given `run` again here (cluster/restarts.py)."""
        errors = []
        for i, (worker_id, actor, ref) in enumerate(list(self.workers)):
            if ref is None or ref in self._reported:
                continue
            if worker_id in self.restarts.waiting:  # died: wait for Ray's restart of it
                verdict = self.restarts.check(worker_id, *actor_state(actor))
            elif not ray.wait([ref], timeout=0)[0]:
                continue
            else:
                try:
                    ray.get(ref, timeout=0)
                    continue  # run() returned (stopped): not a failure
                except ray.exceptions.RayActorError as exc:  # the process died
                    verdict = self.restarts.died(worker_id, exc, *actor_state(actor))
                except Exception as exc:
                    errors.append(f"{worker_id}: {exc}")
                    continue
            if verdict == RUN:  # the new process is up: it re-sends its spool, then goes on
                self.workers[i] = (worker_id, actor, actor.run.remote(self.endpoints))
            elif verdict != WAIT:
                errors.append(verdict)
                self._reported.add(ref)  # its death is judged once
        return errors

    def actors(self) -> list:
        """The actor handles of every worker (launched, running or retiring)."""
        return [actor for _, actor, _ in self.workers] + [r.actor for r in self.retiring]

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
        for r in self.retiring:  # still draining at the end: stopped like the rest
            result = self._stop_one(r.actor, r.run_ref)
            self.retired.append({"worker_id": r.worker_id, "retired": True, **(result or {})})
        self.retiring.clear()
        return self.retired + [r for r in results if r]


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
