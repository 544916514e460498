"""Ids remembered with a policy version, forgotten once that version falls below a horizon.

Why forgetting is safe: the learner refuses any trajectory older than `current version -
max_staleness` by its version alone, before it asks whether the id is new. The buffer and the
ledger (learner/accounting.py) call `forget_below(current - max_staleness - margin)`, so an id
they forgot can only come back below the staleness bound, and is refused as stale: never
admitted, never trained twice. What memory then holds is the ids of the last
`max_staleness + margin` versions, not every id of the run (the audit file on disk keeps all).

The version an id is filed under must be >= its trajectory's `policy_version` (never lower:
that would forget an id that could still be admitted). `add` of an id below the horizon keeps
nothing (such an id is refused by version anyway). Not thread-safe: the owner's lock guards it.
"""

from __future__ import annotations

from collections.abc import Iterable

NEVER = 2**62
"""The version of ids from a checkpoint that predates versioned ids: never forgotten."""


class RecentIds:
    """id -> version, with buckets by version so that forgetting is cheap."""

    def __init__(self):
        self._version: dict[str, int] = {}
        self._by_version: dict[int, list[str]] = {}
        self.horizon: int | None = None  # ids below it were forgotten (None: nothing yet)

    def __contains__(self, tid: object) -> bool:
        return tid in self._version

    def __len__(self) -> int:
        return len(self._version)

    def __iter__(self):
        return iter(self._version)

    def may_have_forgotten(self, version: int | None) -> bool:
        """Could an id filed at `version` (None: unknown) have been here and been forgotten?"""
        if self.horizon is None:
            return False
        return version is None or version < self.horizon

    def add(self, tid: str, version: int) -> None:
        if tid in self._version or (self.horizon is not None and version < self.horizon):
            return
        self._version[tid] = version
        self._by_version.setdefault(version, []).append(tid)

    def update(self, items: Iterable[tuple[str, int]]) -> None:
        for tid, version in items:
            self.add(tid, version)

    def forget_below(self, horizon: int) -> int:
        """Forget every id filed below `horizon` (which only ever rises); returns how many."""
        if self.horizon is not None and horizon <= self.horizon:
            return 0
        self.horizon = horizon
        gone = 0
        for version in [v for v in self._by_version if v < horizon]:
            for tid in self._by_version.pop(version):
                del self._version[tid]
                gone += 1
        return gone

    # ---- checkpoint --------------------------------------------------------------------

    def state(self) -> dict:
        """A plain picklable dict (ids grouped by version: each version is written once)."""
        return {
            "horizon": self.horizon,
            "by_version": {v: list(ids) for v, ids in self._by_version.items()},
        }

    @classmethod
    def from_state(cls, state) -> RecentIds:
        """From `state()`; a plain set or list (a checkpoint from before versioned ids) is
        filed at NEVER, so none of those ids is forgotten too early."""
        out = cls()
        if isinstance(state, dict):
            out.horizon = state.get("horizon")
            for version, ids in state.get("by_version", {}).items():
                for tid in ids:
                    out._version[tid] = int(version)
                out._by_version[int(version)] = list(ids)
        else:
            for tid in state or ():
                out.add(tid, NEVER)
        return out
