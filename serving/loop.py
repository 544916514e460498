"""The serve loop: joined rewards -> learner -> new versions -> canary -> promote or roll back.

    every tick:
        ready   = log.take_ready()                      rated (or defaulted / dropped) responses
        router.observe(version, reward)  for the rated  the canary's evidence
        learner.add(ready)                               too stale -> dropped, counted
        while the buffer holds serve.min_batch fresh     one step each on up to train_batch,
              and learner - stable < max_train_ahead:    unless max_train_ahead versions ahead
            log.mark_trained(batch, new version)         which version learned from whom
        new version (trained since the last rollback) and no canary -> publish, router.propose(it)
        router.decide(now): promote (stable = canary) | rollback (learner reset to stable)

Plain Python: `publish(version, state)` hands weights to the replicas (Ray in cluster/serving.py,
an Engine in tests); `retain(versions)` tells them which versions to keep. Each decision is
appended to `<run dir>/canary_decisions.jsonl`; the per-step figures to `live_metrics.jsonl`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from rewardloop.errors import NotFound
from rewardloop.learner.single_response import SingleResponseLearner
from rewardloop.periodic import Periodic
from rewardloop.trajectory import Trajectory

from .canary import CanaryRouter, Decision
from .response_log import Logged, ResponseLog

log = logging.getLogger(__name__)
KEEP_STATES = 12  # recent versions kept in memory for rollback / pin (tiny next to a model)


class LiveLoop:
    def __init__(
        self,
        log: ResponseLog,
        router: CanaryRouter,
        learner: SingleResponseLearner,
        publish: Callable[[int, dict], None],
        retain: Callable[[list[int]], None],
        train_batch: int,
        max_train_ahead: int = 0,
        min_batch: int = 0,
        out_dir: str | Path | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.log, self.router, self.learner = log, router, learner
        self.publish, self.retain = publish, retain
        self.train_batch = train_batch
        self.min_batch = min_batch or train_batch  # 0 = a fixed batch of train_batch
        self.max_train_ahead = max_train_ahead
        self.paused_ticks = 0
        # The newest version number whose weights are not the learner's own training: at the
        # start, and after a rollback (the learner then holds the stable's weights under that
        # number). Versions up to it are never proposed, and the learner is not "ahead" by them.
        self.base = learner.version
        self.clock = clock
        self.out = Path(out_dir) if out_dir else None
        self.states: OrderedDict[int, dict] = OrderedDict()
        self.states[learner.version] = learner.trainer.state_dict_cpu()
        self.steps: list[dict] = []
        self._recent_live: list[set[int]] = []
        self.lock = threading.RLock()  # ticks and operator commands never interleave
        self._ticker: Periodic | None = None

    # ---- one tick ---------------------------------------------------------------------------

    def tick(self) -> list[Decision]:
        with self.lock:
            ready = self.log.take_ready()
            for r in ready:
                if r.outcome == "rated":
                    self.router.observe(r.version, r.reward, r.created_at)
            stale = self.learner.add([self._trajectory(r) for r in ready])
            self.log.mark_dropped([t.id for t in stale], "stale")
            trained_any = False
            while (
                not self._ahead()
                and (result := self.learner.step(self.train_batch, self.min_batch)) is not None
            ):
                trained, metrics = result
                stale_ids = metrics.pop("stale_ids")
                self.log.mark_dropped(stale_ids, "stale")
                if trained:
                    self.log.mark_trained([(t.id, t.rater) for t in trained], self.learner.version)
                    self._record(trained, metrics)
                    trained_any = True
            if trained_any:
                self._keep(self.learner.version, self.learner.trainer.state_dict_cpu())
            decisions = []
            latest = self.learner.version
            if latest > max(self.router.stable, self.base) and self.router.canary is None:
                self.publish(latest, self.states[latest])
                decision = self.router.propose(latest, self.clock())
                if decision is not None:
                    decisions.append(decision)
                self._retain()
            decision = self.router.decide(self.clock())
            if decision is not None:
                decisions.append(decision)
            for d in decisions:
                self._after(d)
            return decisions

    def _ahead(self) -> bool:
        """serve.max_train_ahead: wait for the stable version to catch up (counted)."""
        ahead = (
            self.max_train_ahead
            and self.learner.version - max(self.router.stable, self.base) >= self.max_train_ahead
        )
        self.paused_ticks += bool(ahead)
        return bool(ahead)

    @staticmethod
    def _trajectory(r: Logged) -> Trajectory:
        return Trajectory(
            id=r.id,
            group_id=r.id,
            prompt_ids=r.prompt_ids,
            completion_ids=r.completion_ids,
            behavior_logprobs=r.logprobs,
            reward=r.reward,
            policy_version=r.version,
            worker_id="serve",
            prompt_key=r.prompt_key,
            feedback_source=r.outcome,
            rater=r.user_key,
        )

    def _keep(self, version: int, state: dict) -> None:
        self.states[version] = state
        protected = {self.router.stable, self.router.canary, self.router.pinned}
        while len(self.states) > KEEP_STATES:
            old = next(v for v in self.states if v not in protected)
            del self.states[old]

    def _retain(self) -> None:
        """Replicas keep the live versions and, for requests routed just before a decision,
        the ones live at the previous two decisions."""
        live = {
            v for v in (self.router.stable, self.router.canary, self.router.pinned) if v is not None
        }
        self._recent_live = [*self._recent_live[-2:], live]
        self.retain(sorted(set().union(*self._recent_live)))

    def _record(self, trained: list[Trajectory], metrics: dict) -> None:
        rewards = [t.reward for t in trained]
        row = {
            "time": self.clock(),
            "version": self.learner.version,
            "responses": len(trained),
            "reward_mean": sum(rewards) / len(rewards),
            "lag_mean": sum(self.learner.version - 1 - t.policy_version for t in trained)
            / len(trained),
            **{k: v for k, v in metrics.items() if isinstance(v, float)},
        }
        self.steps.append(row)
        self._append("live_metrics.jsonl", row)

    def _after(self, d: Decision) -> None:
        if d.action == "rollback":  # the learner goes back to the stable weights
            self.learner.load_weights(self.states[self.router.stable])
        if d.action in ("rollback", "manual_rollback"):  # and that version is not re-proposed
            self.base = self.learner.version
        self._retain()
        self._append("canary_decisions.jsonl", d.to_json())

    def _append(self, name: str, row: dict) -> None:
        if self.out is not None:
            with open(self.out / name, "a") as f:
                f.write(json.dumps(row, default=str) + "\n")

    # ---- operator commands ------------------------------------------------------------------

    def _state(self, version: int) -> dict:
        if version not in self.states:
            known = ", ".join(map(str, self.states))
            raise NotFound(f"version: {version} is not kept (kept: {known})")
        return self.states[version]

    def rollback(self, version: int) -> dict:
        with self.lock:
            state = self._state(version)
            self.publish(version, state)
            d = self.router.rollback(version, self.clock())
            self.learner.load_weights(state)
            self._after(d)
            return d.to_json()

    def pin(self, version: int | None) -> dict:
        with self.lock:
            if version is not None:
                self.publish(version, self._state(version))
            self.router.pin(version)
            self._retain()
            return {"pinned": version}

    def forget(self, user_key: str) -> int:
        with self.lock:
            return self.learner.buffer.forget(user_key)

    # ---- the thread -------------------------------------------------------------------------

    def start(self, period_s: float = 0.5) -> None:
        self._ticker = Periodic(self.tick, period_s, what="serve loop: tick", log=log).start()

    @property
    def errors(self) -> int:
        """Ticks that raised (logged; the next tick tries again)."""
        return self._ticker.errors if self._ticker is not None else 0

    def stop(self, timeout_s: float = 30.0) -> None:
        if self._ticker is not None:
            self._ticker.stop(timeout_s)
