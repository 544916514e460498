"""Exactly-once accounting on the learner: one final outcome per trajectory id, and an audit file.

Every trajectory the learner hears of ends in exactly one outcome, each counted:

    trained   used in an optimizer step (a step skipped for a non-finite loss says so)
    stale     too old: dropped from the buffer, rejected on arrival for its version, or a member
              of a group dropped because a sibling went stale
    expired   its group never completed within learner.partial_group_timeout (a worker died
              mid-group, a rating never came)
    rejected  invalid at ingest (the reason names the field), over the credits, buffer full

A re-sent id that already has an outcome, or that the buffer already holds, is not a second
outcome: it counts in `duplicates_ignored`. Between admission and an outcome an id is "in
flight": in the buffer (the buffer knows) or taken for the step being trained (`taken`, here).

The audit is an append-only JSON-lines file (`<run_dir>/audit/learner.jsonl`): one line per
decided id (`id`, `outcome`, `worker`, `version`, `step` for trained, `reason` for the rest) and
one per ignored duplicate (`outcome: "duplicate"`, not an outcome of the id). Each call writes
its lines with one write and flushes them, so they are in the OS before the call returns and
survive a SIGKILL of the learner (not a power cut: there is no fsync per line). `state()` and
`load_state()` round-trip everything in a plain picklable dict for the learner checkpoint; the
state remembers how long the audit was, and `load_state` cuts the audit back to that length, so
the audit never holds outcomes the restored learner does not know of. `write_in_flight` records
what was still in flight when the learner stopped (`audit/learner_in_flight.json`).

Memory is bounded in the length of the run: the counts, the ids taken for the current step, and
the decided ids of recent versions only (`RecentIds`, learner/recent_ids.py). The buffer calls
`forget_below(current - max_staleness - margin)` as versions advance: an id it forgets can only
come back below the staleness bound, where it is refused as stale by its version, so it is
never trained twice. Such a refusal may be a re-send of an id that already has its outcome: a
refusal of an id this ledger no longer remembers, but might have, is written with
`"maybe_duplicate": true`, counted once more under its outcome and in `maybe_duplicates`, and
`cluster/accounting_report.py` (which reads the whole audit) counts it as a duplicate when the
id's outcome is already in the audit, else as that outcome. The checkpoint holds the same
bounded state. Payloads are never kept here.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from rewardloop.learner.recent_ids import RecentIds
from rewardloop.run_outputs import read_records
from rewardloop.trajectory import Trajectory

OUTCOMES = ("trained", "stale", "expired", "rejected")
AUDIT_FILE = "learner.jsonl"
IN_FLIGHT_FILE = "learner_in_flight.json"
STALE_MARK = "is too stale"
"""The buffer's reason for a trajectory too old on arrival contains this (see buffer.py)."""
_STALE_VERSION = re.compile(r"policy_version: (-?\d+) " + STALE_MARK)


def outcome_for_reject(reason: str) -> str:
    """A trajectory refused at ingest is stale when it was too old, else rejected."""
    return "stale" if STALE_MARK in reason else "rejected"


class Ledger:
    """Thread-safe ledger of outcomes; `audit_dir=None` keeps it in memory only (tests)."""

    def __init__(self, audit_dir: str | Path | None = None):
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter({k: 0 for k in OUTCOMES})
        self._decided = RecentIds()  # id -> the version it is filed under (recent ones only)
        self._latest = 0  # the newest learner version this ledger has heard of
        self._taken: dict[str, str] = {}  # id -> worker, taken for the step now training
        self.audit_dir = Path(audit_dir) if audit_dir is not None else None
        self._file = None
        if self.audit_dir is not None:
            self.audit_dir.mkdir(parents=True, exist_ok=True)
            self._file = (self.audit_dir / AUDIT_FILE).open("ab")
            self._end_torn_line()

    @property
    def audit_path(self) -> Path | None:
        return self.audit_dir / AUDIT_FILE if self.audit_dir is not None else None

    # ---- decisions ---------------------------------------------------------------------

    def decided(self, tid: str) -> bool:
        """True when `tid` already has its outcome (a re-send of it is a duplicate)."""
        with self._lock:
            return tid in self._decided

    def decided_among(self, tids: Iterable[str]) -> set[str]:
        """The ids of `tids` that already have their outcome (one lock for a whole batch)."""
        with self._lock:
            return {tid for tid in tids if tid in self._decided}

    def reject(self, tid: str, reason: str, worker: str = "", version: int | None = None) -> bool:
        """Record an ingest refusal (stale or rejected, from the reason). False when `tid`
        already had an outcome: then it counts as an ignored duplicate instead. `version` is
        the learner's (None when the trajectory was refused before it was decoded)."""
        outcome = outcome_for_reject(reason)
        found = _STALE_VERSION.search(reason) if outcome == "stale" else None
        policy_version = int(found.group(1)) if found else None
        with self._lock:
            if tid and tid in self._decided:
                self._duplicate_locked(tid, worker)
                return False
            if version is not None:
                self._latest = max(self._latest, version)
            extra = {"reason": reason}
            if tid and self._decided.may_have_forgotten(policy_version):
                extra["maybe_duplicate"] = True  # the report decides (see the module doc)
                self._counts["maybe_duplicates"] += 1
            if tid:
                # filed at a version >= the trajectory's: its own when the reason names it,
                # else the learner's (one past the newest known when not even that is given)
                key = policy_version if policy_version is not None else version
                self._decided.add(tid, self._latest + 1 if key is None else key)
            self._counts[outcome] += 1
            self._write_locked([_line(tid, outcome, worker, version, **extra)])
            return True

    def duplicate(self, tid: str, worker: str = "") -> None:
        """A re-sent id that was already admitted or decided: ignored, counted."""
        with self._lock:
            self._duplicate_locked(tid, worker)

    def taken(self, trajs: Iterable[Trajectory]) -> None:
        """The buffer handed these to the trainer: in flight until `trained`."""
        with self._lock:
            for t in trajs:
                self._taken[t.id] = t.worker_id

    def trained(
        self, trajs: Iterable[Trajectory], version: int, step: int, skipped: bool = False
    ) -> None:
        """The step (number `step`, trained at `version`) is done with these trajectories."""
        extra = {"step": step, **({"step_skipped": True} if skipped else {})}
        self._decide(trajs, "trained", version, extra)

    def dropped(self, trajs: Iterable[Trajectory], outcome: str, version: int, reason: str) -> None:
        """The buffer dropped these (`stale` or `expired`), with the reason."""
        if outcome not in ("stale", "expired"):
            raise ValueError(f"outcome: must be stale or expired, got {outcome!r}")
        self._decide(trajs, outcome, version, {"reason": reason})

    def _decide(self, trajs: Iterable[Trajectory], outcome: str, version: int, extra: dict) -> None:
        lines = []
        with self._lock:
            self._latest = max(self._latest, version)
            for t in trajs:
                self._taken.pop(t.id, None)
                if t.id in self._decided:  # a bug upstream: never a second outcome
                    self._counts["conflicts"] += 1
                    continue
                self._decided.add(t.id, t.policy_version)
                self._counts[outcome] += 1
                lines.append(_line(t.id, outcome, t.worker_id, version, **extra))
            self._write_locked(lines)

    def forget_below(self, horizon: int, current_version: int) -> int:
        """Forget the decided ids filed below `horizon` (the buffer's: current_version -
        max_staleness - margin); returns how many. See the module doc for why it is safe."""
        with self._lock:
            self._latest = max(self._latest, current_version)
            return self._decided.forget_below(horizon)

    def remembered(self) -> int:
        """How many decided ids are in memory (bounded: recent versions only)."""
        with self._lock:
            return len(self._decided)

    def _duplicate_locked(self, tid: str, worker: str) -> None:
        self._counts["duplicates_ignored"] += 1
        self._write_locked([_line(tid, "duplicate", worker, None)])

    # ---- reporting ---------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """trained, stale, expired, rejected, duplicates_ignored, taken (in the step now
        training), conflicts (a second outcome refused: always 0 unless there is a bug) and
        maybe_duplicates (refusals of ids too old to be remembered, counted under their outcome:
        the audit report tells which of them were re-sends of decided ids)."""
        with self._lock:
            out = {k: self._counts[k] for k in OUTCOMES}
            for k in ("duplicates_ignored", "conflicts", "maybe_duplicates"):
                out[k] = self._counts[k]
            out["taken"] = len(self._taken)
            return out

    def write_in_flight(self, buffered: dict[str, str], incarnation: str = "") -> Path | None:
        """Record the ids in flight as the learner stops: `buffered` (id -> worker, from the
        buffer) and those taken for a step that did not finish, and which learner process
        stopped (`incarnation`: the accounting tells its answers from a dead one's). Replaced
        atomically."""
        if self.audit_dir is None:
            return None
        with self._lock:
            record = {
                "time": time.time(),
                "incarnation": incarnation,
                "buffered": buffered,
                "taken": dict(self._taken),
                "counts": {k: self._counts[k] for k in (*OUTCOMES, "duplicates_ignored")},
            }
        path = self.audit_dir / IN_FLIGHT_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)
        return path

    # ---- checkpoint --------------------------------------------------------------------

    def state(self) -> dict:
        """Everything needed to go on after a restart, as a plain picklable dict. Taken ids are
        saved too, but see `load_state`."""
        with self._lock:
            if self._file is not None:
                self._file.flush()
            return {
                "counts": dict(self._counts),
                "decided": self._decided.state(),  # recent versions only: bounded
                "latest": self._latest,
                "taken": dict(self._taken),
                "audit_bytes": self._file.tell() if self._file is not None else 0,
            }

    def load_state(self, state: dict) -> None:
        """Restore `state()`. The audit is cut back to the length it had then (lines written
        after the checkpoint describe outcomes the restored learner no longer knows of). Ids
        that were taken for an unfinished step are not restored as taken: they have no
        outcome, so whatever holds them (the restored buffer, a re-send) decides them anew."""
        with self._lock:
            self._counts = Counter(state.get("counts", {}))
            for k in OUTCOMES:
                self._counts.setdefault(k, 0)
            self._decided = RecentIds.from_state(state.get("decided", ()))
            self._latest = int(state.get("latest", 0))
            self._taken = {}
            if self._file is not None:
                self._file.flush()
                size = int(state.get("audit_bytes", 0))
                if self._file.tell() > size:
                    self._file.truncate(size)
                    self._file.seek(size)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    # ---- the audit file ----------------------------------------------------------------

    def _write_locked(self, lines: list[dict]) -> None:
        if self._file is None or not lines:
            return
        text = "".join(json.dumps(x, separators=(",", ":")) + "\n" for x in lines)
        self._file.write(text.encode())
        self._file.flush()

    def _end_torn_line(self) -> None:
        """A learner killed mid-write may have left half a line: start on a fresh one."""
        path = self.audit_path
        if path is None or path.stat().st_size == 0:
            return
        with path.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                self._file.write(b"\n")
                self._file.flush()


def _line(tid: str, outcome: str, worker: str, version: int | None, **extra) -> dict:
    out = {"id": tid, "outcome": outcome, "worker": worker}
    if version is not None:
        out["version"] = version
    out.update(extra)
    out["t"] = round(time.time(), 3)
    return out


def read_audit(path: str | Path) -> list[dict]:
    """The audit's lines (a torn last line, from a kill mid-write, is skipped): JSONL like
    metrics.jsonl, read by the same reader."""
    return read_records(path)
