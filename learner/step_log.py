"""The learner's step records: how many steps it has taken, and only the newest of their records.

`LearnerService.metrics` was a list of every step's record, kept for the whole run and pickled
whole into every resume checkpoint. The records' home is the run's metrics.jsonl (the driver
writes each one it fetches with `metrics_since`, twice a second), so the learner keeps only the
newest `keep` of them, in memory and in the checkpoint, and behaves like that list otherwise:

    len(log)        every step so far (the next step is number len(log) + 1)
    log[i:]         the records of steps i + 1 ... that are still kept (what `metrics_since` sends)
    log[-1]         the newest record;  iter(log): the kept ones, oldest first

Indices are the list's (0 = step 1). A record older than the kept ones is an IndexError for
`log[i]` and simply absent from a slice: the driver is never that far behind (`keep` steps
between two polls half a second apart).
"""

from __future__ import annotations

import threading
from collections import deque

KEEP = 256


class StepLog:
    """Thread-safe: the training thread appends while the driver's calls read."""

    def __init__(self, keep: int = KEEP):
        if keep < 1:
            raise ValueError(f"keep: must be >= 1, got {keep}")
        self._lock = threading.Lock()
        self._tail: deque[dict] = deque(maxlen=keep)
        self._count = 0

    @property
    def first_kept(self) -> int:
        """The index of the oldest record still kept."""
        with self._lock:
            return self._count - len(self._tail)

    def append(self, record: dict) -> None:
        with self._lock:
            self._tail.append(record)
            self._count += 1

    def __len__(self) -> int:
        return self._count

    def __iter__(self):
        with self._lock:
            return iter(list(self._tail))

    def __getitem__(self, key):
        with self._lock:
            count, tail = self._count, list(self._tail)
        first = count - len(tail)
        if isinstance(key, slice):
            wanted = range(*key.indices(count))
            return [r for i, r in enumerate(tail, start=first) if i in wanted]
        i = key + count if key < 0 else key
        if not first <= i < count:
            raise IndexError(f"step record {key}: {count} steps, records {first}..{count - 1} kept")
        return tail[i - first]

    # ---- resume checkpoint -------------------------------------------------------------

    def state(self) -> dict:
        with self._lock:
            return {"count": self._count, "tail": list(self._tail)}

    def load_state(self, state) -> None:
        """From `state()`, or from a plain list of every record (an older checkpoint)."""
        if isinstance(state, dict):
            count, records = int(state["count"]), list(state["tail"])
        else:
            count, records = len(state), list(state)
        with self._lock:
            self._tail.clear()
            self._tail.extend(records[-self._tail.maxlen :])
            self._count = count
