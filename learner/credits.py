"""Credit accounting for the trajectory streams: the learner's back-pressure, as one object.

Invariant: credits outstanding on open streams + trajectories held in the buffer + the free pool
== capacity, so clients that respect their credits can never overfill the buffer.

Life of a credit: granted to a stream (`open_stream`, or a grant returned by `release` /
`close_stream` / `resume`) -> spent when the worker sends a trajectory (`consume` moves it to
"held" for that worker) -> back to the pool when the trajectory leaves the buffer, or at once
when it was not admitted (`release`).

Two rules make N workers share the capacity without wasting it:

- Whole groups (`unit` = group_size). Credits are granted only in multiples of `unit`, so a
  worker's credits always cover whole groups and it generates exactly that many groups. A
  group split across grants would wait in the buffer, incomplete, for its missing members.
  Released credits that do not yet make a whole unit stay in the pool until they do.
- Water-filling. Pooled units go out straight away, one unit at a time to the live stream using
  the least (outstanding + held), ties going to the releasing worker's stream. So a lone worker
  gets its own credits back, and a newly opened stream that got nothing catches up on the next
  releases instead of starving.

Staleness (version-aware admission). The learner sizes the capacity as max(1, max_staleness)
training steps (config.buffer_capacity) and releases a step's credits when it takes the step's
groups, at version V; a worker then generates with weights V, and its data is trained on after
at most the steps already queued, i.e. at version <= V + max_staleness. This is the
PipelineRL/AReaL staleness bound: generation i may start only with weights >= i - max_staleness.
With max_staleness 1 the budget is exactly one step, so nothing can overtake and the bound is
exact. With more, a fast worker's data may arrive before a slow one's (the buffer then trains
the oldest weights first); only a generation that takes longer than about max_staleness - 1
learner steps can still arrive too stale (it is dropped and counted). The budget holds
groups_per_step x max(1, max_staleness) groups, so at most that many workers are generating at
once: more workers help only up to there.

For max_staleness 0 the data made with weights V would be trained at V + 1, one version too
late, so the learner `pause`s grants while it trains and `resume`s them once version V + 1 is
published: workers then generate with V + 1.
"""

from __future__ import annotations

import heapq
import threading
from dataclasses import dataclass

Grant = tuple[str, int]
"""(stream_id, credits) that the server must send as a credit-only Ack."""


@dataclass
class _Stream:
    worker_id: str
    outstanding: int = 0
    order: int = 0


class CreditLedger:
    """Thread-safe per-stream credit ledger with a shared capacity, granted in whole units."""

    def __init__(self, capacity: int, held: dict[str, int] | None = None, unit: int = 1):
        if capacity < 1:
            raise ValueError(f"capacity: must be >= 1, got {capacity}")
        if unit < 1:
            raise ValueError(f"unit: must be >= 1, got {unit}")
        self.capacity = capacity
        self.unit = min(unit, capacity)  # a unit larger than the capacity could never be granted
        self._lock = threading.Lock()
        self._streams: dict[str, _Stream] = {}
        self._held: dict[str, int] = {w: n for w, n in (held or {}).items() if n > 0}
        self._opened = 0
        self._paused = False
        if sum(self._held.values()) > capacity:
            raise ValueError("held: more trajectories buffered than the capacity")

    # ---- stream lifecycle --------------------------------------------------------------

    def open_stream(self, stream_id: str, worker_id: str) -> int:
        """Register a stream; returns its initial credits (a fair share of what is free, in
        whole units; none while paused)."""
        with self._lock:
            if stream_id in self._streams:
                raise ValueError(f"stream_id: {stream_id!r} is already open")
            self._opened += 1
            live = len(self._streams) + 1
            share = max(self.unit, self._whole(self.capacity // live))
            grant = 0 if self._paused else max(0, min(self._whole(self._free_locked()), share))
            self._streams[stream_id] = _Stream(worker_id, grant, self._opened)
            return grant

    def close_stream(self, stream_id: str) -> list[Grant]:
        """Forget a stream; its unspent credits go to the streams that are short."""
        with self._lock:
            stream = self._streams.pop(stream_id, None)
            if stream is None or stream.outstanding == 0:
                return []
            return self._distribute_locked(prefer_worker=None)

    # ---- credit flow -------------------------------------------------------------------

    def consume(self, stream_id: str, n: int) -> int:
        """The stream sent `n` trajectories; returns how many were covered by its credits.

        The covered ones count as held by the stream's worker until `release`d; the rest
        exceeded the credits and must be rejected without entering the buffer.
        """
        with self._lock:
            stream = self._streams.get(stream_id)
            if stream is None or n <= 0:
                return 0
            allowed = min(n, stream.outstanding)
            stream.outstanding -= allowed
            self._held[stream.worker_id] = self._held.get(stream.worker_id, 0) + allowed
            return allowed

    def release(self, worker_id: str, n: int) -> list[Grant]:
        """`n` of the worker's held trajectories left (trained, dropped or not admitted).

        Returns the grants to send (none while paused). Releases beyond what the ledger holds
        for the worker (e.g. items added to the buffer by someone else) are ignored.
        """
        with self._lock:
            held = self._held.get(worker_id, 0)
            n = min(n, held)
            if n <= 0:
                return []
            if held == n:
                del self._held[worker_id]
            else:
                self._held[worker_id] = held - n
            return self._distribute_locked(prefer_worker=worker_id)

    def pause(self) -> None:
        """Keep released credits in the pool (grant nothing) until `resume`."""
        with self._lock:
            self._paused = True

    def resume(self) -> list[Grant]:
        """Grant again; returns the grants for everything pooled while paused."""
        with self._lock:
            self._paused = False
            return self._distribute_locked(prefer_worker=None)

    # ---- internals ---------------------------------------------------------------------

    def _whole(self, n: int) -> int:
        return n - n % self.unit

    def _free_locked(self) -> int:
        used = sum(s.outstanding for s in self._streams.values()) + sum(self._held.values())
        return self.capacity - used

    def _distribute_locked(self, prefer_worker: str | None) -> list[Grant]:
        """Give every free whole unit to live streams by water-filling on their usage."""
        if self._paused or not self._streams:
            return []
        units = self._free_locked() // self.unit
        if units <= 0:
            return []
        heap = [
            (
                s.outstanding + self._held.get(s.worker_id, 0),
                0 if s.worker_id == prefer_worker else 1,
                s.order,
                sid,
            )
            for sid, s in self._streams.items()
        ]
        heapq.heapify(heap)
        grants: dict[str, int] = {}
        for _ in range(units):
            usage, pref, order, sid = heapq.heappop(heap)
            grants[sid] = grants.get(sid, 0) + self.unit
            heapq.heappush(heap, (usage + self.unit, pref, order, sid))
        for sid, k in grants.items():
            self._streams[sid].outstanding += k
        return sorted(grants.items())

    def snapshot(self) -> dict:
        """Outstanding credits per stream, held per worker, the free pool, unit and pause."""
        with self._lock:
            return {
                "capacity": self.capacity,
                "unit": self.unit,
                "paused": self._paused,
                "free": self._free_locked(),
                "outstanding": {sid: s.outstanding for sid, s in self._streams.items()},
                "held": dict(self._held),
                "streams": len(self._streams),
            }
