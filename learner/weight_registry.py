"""Versioned weights in memory: the newest version, a few recent ones, and a long-poll for newer.

The learner publishes each version's payload here: whatever its transport hands out (a Ray
object ref in the cluster, a state dict in tests and benchmarks); the registry never looks
inside it. Readers ask for the newest version if it is newer than theirs (`latest`), for one
recent version by number (`get`, e.g. to checkpoint one the driver evaluated), or block until a
newer one is published (`wait_for_newer`, one Condition, woken by `publish`; each wait is capped
at `max_wait_s` so a caller's thread is never held longer). Thread-safe, plain Python.

Versions only grow: publishing one older than the newest is an error; publishing the newest
again replaces its payload. The newest `keep` versions stay reachable through `get`.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["WeightRegistry"]


class WeightRegistry:
    """The newest version and the `keep` most recent ones, with a capped long-poll for newer."""

    def __init__(self, keep: int = 8, max_wait_s: float = 10.0):
        if keep < 1:
            raise ValueError(f"keep: must be >= 1, got {keep}")
        if not max_wait_s > 0:
            raise ValueError(f"max_wait_s: must be > 0, got {max_wait_s}")
        self.keep = keep
        self.max_wait_s = max_wait_s
        self._recent: dict[int, Any] = {}  # version -> payload, insertion order = version order
        self._newest = -1
        self._waiters = 0
        self._published = threading.Condition()

    @property
    def version(self) -> int:
        """The newest published version, -1 before the first."""
        with self._published:
            return self._newest

    @property
    def waiters(self) -> int:
        """Callers blocked in `wait_for_newer` right now."""
        with self._published:
            return self._waiters

    def versions(self) -> list[int]:
        """The versions `get` can still return, oldest first."""
        with self._published:
            return list(self._recent)

    def publish(self, version: int, payload: Any) -> None:
        """Make `payload` the newest version and wake every waiter; forget all but `keep`."""
        with self._published:
            if version < self._newest:
                raise ValueError(f"version: {version} is older than the newest, {self._newest}")
            self._recent.pop(version, None)
            self._recent[version] = payload
            self._newest = version
            while len(self._recent) > self.keep:
                del self._recent[next(iter(self._recent))]
            self._published.notify_all()

    def latest(self, have_version: int = -1) -> tuple[int, Any] | None:
        """(version, payload) of the newest version if it is newer than `have_version`, else None."""
        with self._published:
            return self._newer_than(have_version)

    def get(self, version: int) -> Any | None:
        """The payload of `version` if it is among the recent ones, else None."""
        with self._published:
            return self._recent.get(version)

    def wait_for_newer(self, newer_than: int, timeout_s: float) -> tuple[int, Any] | None:
        """Like `latest(newer_than)`, but blocks up to min(timeout_s, max_wait_s) seconds for a
        newer version to be published. None when none came in time."""
        timeout = min(max(0.0, timeout_s), self.max_wait_s)
        with self._published:
            self._waiters += 1
            try:
                self._published.wait_for(lambda: self._newest > newer_than, timeout=timeout)
            finally:
                self._waiters -= 1
            return self._newer_than(newer_than)

    def _newer_than(self, have_version: int) -> tuple[int, Any] | None:
        if self._newest <= have_version:
            return None
        return self._newest, self._recent[self._newest]
