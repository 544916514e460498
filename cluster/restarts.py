"""Rollout workers that die are restarted by Ray, a bounded number of times; the run goes on.

Each rollout actor is created with `max_restarts = rollout.max_restarts` (and no task retries):
when its process dies (SIGKILL, the OOM killer, a node lost), Ray starts a new process and runs
the constructor again with the same worker id, while the driver sees the worker's `run()` call
fail with a `RayActorError`. Ray answers calls made while the new process is starting with
`ActorUnavailableError` at once (it does not queue them), so the pool waits: each poll asks
the GCS for the actor's state and restart count (`actor_state`), and once it is ALIVE again the
pool calls `run()` on the same handle; the worker then re-sends what its spool holds unacked
(actors/spool.py). The other workers never stop meanwhile. When Ray gives up (DEAD: the restarts
are used up) the run stops with a reason naming the worker, the restarts used and the key.
An error raised inside `run()` (bad config, refused token) is not a death: it still stops the
run at once, as a restart would only repeat it.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)
RUN, WAIT = "run", "wait"


def actor_state(actor) -> tuple[str, int | None]:
    """(GCS state: ALIVE, RESTARTING, DEAD, ..., number of restarts) of an actor handle.

    Read from the GCS directly (`ray._private.state.actors`, no dashboard needed); a lookup
    that fails answers ("UNKNOWN", None), which the book treats as still restarting."""
    from ray._private import state

    try:
        info = state.actors(actor._actor_id.hex())
        return str(info.get("State", "UNKNOWN")), int(info.get("NumRestarts", 0))
    except Exception as exc:  # noqa: BLE001 - the lookup is advisory; polls try again
        log.debug("actor state lookup failed: %s", exc)
        return "UNKNOWN", None


class RestartBook:
    """Deaths seen per worker and the verdict on each (plain Python: the pool feeds it).

    The restart count is the GCS's (`NumRestarts`), never inferred from errors: the error can
    reach the driver before the GCS has seen the death, and a call made meanwhile fails again."""

    def __init__(self, max_restarts: int, settle_s: float = 30.0):
        self.max_restarts = max_restarts
        self.settle_s = settle_s  # ALIVE with no new restart this long: the call was lost, not it
        self.used: dict[str, int] = {}  # restarts Ray made, per worker
        self.events: list[dict] = []  # {"worker_id", "time", "restart", "error"} per death
        # died, not yet given run() again -> (since, restarts known when it died)
        self.waiting: dict[str, tuple[float, int]] = {}
        self._last_error: dict[str, str] = {}
        self._told = 0

    def actor_options(self) -> dict:
        """Ray options of a restartable rollout actor (the driver re-issues `run` itself)."""
        return {"max_restarts": self.max_restarts, "max_task_retries": 0}

    def died(self, worker_id: str, error: BaseException, state: str, restarts: int | None) -> str:
        """A worker's `run()` failed because its process died (or could not be reached);
        returns RUN (it is up again: call `run`), WAIT (Ray is restarting it) or the reason
        the run must stop."""
        self._last_error[worker_id] = _first_line(error)
        self.waiting.setdefault(worker_id, (time.monotonic(), self.used.get(worker_id, 0)))
        if restarts is None and "ActorDiedError" in self._last_error[worker_id]:
            state = "DEAD"  # no GCS answer, and Ray says it is gone for good
        return self.check(worker_id, state, restarts)

    def check(self, worker_id: str, state: str, restarts: int | None) -> str:
        """For a worker that died: RUN once it is ALIVE, WAIT meanwhile, else the reason."""
        before = self.used.get(worker_id, 0)
        if restarts is not None and restarts > before:
            self.used[worker_id] = restarts
            for n in range(before + 1, restarts + 1):
                self._event(worker_id, n)
                log.warning(
                    "rollout worker %s died (%s); Ray restarts it (restart %d of "
                    "rollout.max_restarts=%d); the other workers go on",
                    worker_id,
                    self._last_error.get(worker_id, ""),
                    n,
                    self.max_restarts,
                )
        if state == "DEAD":
            self.waiting.pop(worker_id, None)
            self._event(worker_id, 0)
            return self._reason(worker_id)
        since, at_death = self.waiting.get(worker_id, (time.monotonic(), before))
        restarted = self.used.get(worker_id, 0) > at_death
        if state == "ALIVE" and (restarted or time.monotonic() - since > self.settle_s):
            self.waiting.pop(worker_id, None)
            return RUN
        return WAIT

    def _event(self, worker_id: str, restart: int) -> None:
        self.events.append(
            {
                "worker_id": worker_id,
                "time": time.time(),
                "restart": restart,  # 0: not restarted (the run stops)
                "error": self._last_error.get(worker_id, ""),
            }
        )

    def _reason(self, worker_id: str) -> str:
        used, brief = self.used.get(worker_id, 0), self._last_error.get(worker_id, "")
        if self.max_restarts == 0:
            return (
                f"{worker_id}: its process died ({brief}); rollout.max_restarts=0 allows no "
                "restart (set rollout.max_restarts=N to let Ray restart it N times)"
            )
        return (
            f"{worker_id}: its process died again ({brief}) after {used} restart(s), all "
            f"that rollout.max_restarts={self.max_restarts} allows (raise rollout.max_restarts "
            "to allow more)"
        )

    def new_events(self) -> list[dict]:
        """Deaths not yet asked for (the driver logs each in metrics.jsonl once)."""
        out, self._told = self.events[self._told :], len(self.events)
        return out

    def summary(self) -> dict:
        """For summary.json: restarts used per worker and each death."""
        return {"max_restarts": self.max_restarts, "used": dict(self.used), "deaths": self.events}


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    line = text[0] if text else type(error).__name__
    return f"{type(error).__name__}: {line}"[:300]
