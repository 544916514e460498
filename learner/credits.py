"""Credit accounting for the trajectory streams: the learner's back-pressure, as one object.

Invariant: credits outstanding on open streams + trajectories held in the buffer + the free pool
== capacity, so clients that respect their credits can never overfill the buffer.

Life of a credit: granted to a stream (`open_stream`, or a grant returned by `release` /
`close_stream`) -> spent when the worker sends a trajectory (`consume` moves it to "held" for
that worker) -> back to the pool when the trajectory leaves the buffer, or at once when it was
not admitted (`release`). Pooled credits are handed out straight away by water-filling: one at a
time to the live stream using the least (outstanding + held), ties going to the releasing
worker's stream. So a lone worker gets its own credits back, while a newly opened stream that
got nothing catches up on the next releases instead of starving.
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
    """Thread-safe per-stream credit ledger with a shared capacity."""

    def __init__(self, capacity: int, held: dict[str, int] | None = None):
        if capacity < 1:
            raise ValueError(f"capacity: must be >= 1, got {capacity}")
        self.capacity = capacity
        self._lock = threading.Lock()
        self._streams: dict[str, _Stream] = {}
        self._held: dict[str, int] = {w: n for w, n in (held or {}).items() if n > 0}
        self._opened = 0
        if sum(self._held.values()) > capacity:
            raise ValueError("held: more trajectories buffered than the capacity")

    # ---- stream lifecycle --------------------------------------------------------------

    def open_stream(self, stream_id: str, worker_id: str) -> int:
        """Register a stream; returns its initial credits (a fair share of what is free)."""
        with self._lock:
            if stream_id in self._streams:
                raise ValueError(f"stream_id: {stream_id!r} is already open")
            self._opened += 1
            live = len(self._streams) + 1
            share = max(1, self.capacity // live)
            grant = max(0, min(self._free_locked(), share))
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

        Returns the grants to send. Releases beyond what the ledger holds for the worker
        (e.g. items added to the buffer by someone else) are ignored.
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

    def free_pool_grants(self) -> list[Grant]:
        """Hand out whatever sits in the free pool (e.g. after a stream was closed)."""
        with self._lock:
            return self._distribute_locked(prefer_worker=None)

    # ---- internals ---------------------------------------------------------------------

    def _free_locked(self) -> int:
        used = sum(s.outstanding for s in self._streams.values()) + sum(self._held.values())
        return self.capacity - used

    def _distribute_locked(self, prefer_worker: str | None) -> list[Grant]:
        """Give every free credit to live streams by water-filling on their usage."""
        pool = self._free_locked()
        if pool <= 0 or not self._streams:
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
        for _ in range(pool):
            usage, pref, order, sid = heapq.heappop(heap)
            grants[sid] = grants.get(sid, 0) + 1
            heapq.heappush(heap, (usage + 1, pref, order, sid))
        for sid, k in grants.items():
            self._streams[sid].outstanding += k
        return sorted(grants.items())

    def snapshot(self) -> dict:
        """Outstanding credits per stream, held per worker, and the free pool."""
        with self._lock:
            return {
                "capacity": self.capacity,
                "free": self._free_locked(),
                "outstanding": {sid: s.outstanding for sid, s in self._streams.items()},
                "held": dict(self._held),
                "streams": len(self._streams),
            }
