"""A rollout worker's spool: every trajectory it sends is on disk first, so none is lost with it.

A worker killed with SIGKILL loses its memory, not its spool. Ray restarts the actor with the
same worker id (`rollout.max_restarts`); the new process opens the same spool and re-sends what
was never acked, first. The learner de-duplicates by id, so a trajectory it had admitted comes
back as a duplicate and is trained on at most once. The driver reads every spool at the end of
the run: the union of their ids is what was generated (`summary.json` accounting).

Layout of `<spool_dir>/<worker_id>/` (`rollout.spool_dir`, default the run directory's `spool/`;
with workers on several nodes it must be a volume they all share with the driver):

    journal.jsonl   append-only, ids only: {"sent": [ids], "seg": n} before a send,
                    {"acked": [ids]} once the learner answered for them (accepted, duplicate or
                    rejected: it has decided), {"dropped": [[id, outcome, reason], ...]} for what
                    the worker threw away itself (a rating that expired, a non-finite reward)
    seg-<n>.jsonl   the payloads: one {"id", "p": base64 of the Trajectory protobuf} per line

Bounded: a segment holds SEGMENT_TRAJECTORIES payloads; once every trajectory in a finished
segment is acked the segment is deleted, so the payloads on disk are about what is unacked (at
most the worker's credits plus one segment), and memory holds only the unacked ids. The journal
keeps the ids of everything sent (about 50 bytes each): that is the worker's audit.

Durability: each append is one write, flushed to the OS before the send that depends on it
(a SIGKILL loses nothing; a power cut may lose the last lines: no fsync per send). A line torn
by a kill mid-write is skipped when read. The payload is written before the journal line, so
an id in the journal always has its payload until it is acked.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from rewardloop.pb import trajectory_pb2
from rewardloop.trajectory import Trajectory
from rewardloop.wire import trajectory_from_proto, trajectory_to_proto

log = logging.getLogger(__name__)
JOURNAL = "journal.jsonl"
SEGMENT_TRAJECTORIES = 512


def spool_root(cfg) -> Path:
    """The run's spool directory: rollout.spool_dir, or the run directory's spool/."""
    return Path(cfg.rollout.spool_dir) if cfg.rollout.spool_dir else Path(cfg.out) / "spool"


def read_jsonl(path: Path) -> list[dict]:
    """The lines of a JSON-lines file; a torn or garbled line (a kill mid-write) is skipped."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    out = []
    for line in raw.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def read_journal(worker_dir: str | Path) -> dict:
    """What one worker's journal says: {"sent": {id: seg}, "acked": set, "dropped": {id:
    (outcome, reason)}} (used by the spool on restart and by the driver's report)."""
    sent: dict[str, int] = {}
    acked: set[str] = set()
    dropped: dict[str, tuple[str, str]] = {}
    for record in read_jsonl(Path(worker_dir) / JOURNAL):
        for tid in record.get("sent", ()):
            sent[tid] = int(record.get("seg", 0))
        acked.update(record.get("acked", ()))
        for tid, outcome, reason in record.get("dropped", ()):
            dropped[tid] = (outcome, reason)
    return {"sent": sent, "acked": acked, "dropped": dropped}


class Spool:
    """One worker's spool (not thread-safe: the worker's loop is its only user)."""

    def __init__(self, directory: str | Path, segment_trajectories: int = SEGMENT_TRAJECTORIES):
        if segment_trajectories < 1:
            raise ValueError(f"segment_trajectories: must be >= 1, got {segment_trajectories}")
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.segment_trajectories = segment_trajectories
        found = read_journal(self.dir)
        self._unacked: dict[str, int] = {
            tid: seg
            for tid, seg in found["sent"].items()
            if tid not in found["acked"] and tid not in found["dropped"]
        }
        self.stats = {
            "spooled": len(found["sent"]),  # ever, this spool (earlier incarnations included)
            "acked": len(found["acked"]),
            "dropped": len(found["dropped"]),
            "found_unacked": len(self._unacked),  # on opening: what a dead process left
            "segments_deleted": 0,
        }
        self._pending_count: dict[int, int] = {}
        for seg in self._unacked.values():
            self._pending_count[seg] = self._pending_count.get(seg, 0) + 1
        segs = [int(p.stem.split("-", 1)[1]) for p in self.dir.glob("seg-*.jsonl")]
        self._seg = max([*segs, *found["sent"].values(), 0]) + 1  # a fresh segment per process
        self._seg_count = 0
        self._seg_file = None
        self._journal = self._open_append(self.dir / JOURNAL)
        for seg in segs:  # finished segments with nothing unacked (compaction a kill cut short)
            if seg not in self._pending_count:
                self._delete_segment(seg)

    # ---- writing -----------------------------------------------------------------------

    def append(self, trajs: Iterable[Trajectory]) -> list[Trajectory]:
        """Spool the trajectories not spooled yet (payloads, then their ids); returns those."""
        new = [t for t in trajs if t.id not in self._unacked]
        i = 0
        while i < len(new):
            if self._seg_file is None or self._seg_count >= self.segment_trajectories:
                self._next_segment()
            chunk = new[i : i + self.segment_trajectories - self._seg_count]
            i += len(chunk)
            lines = [
                json.dumps({"id": t.id, "p": _encode(t)}, separators=(",", ":")) + "\n"
                for t in chunk
            ]
            self._write(self._seg_file, "".join(lines))
            ids = [t.id for t in chunk]
            self._write(self._journal, _jline({"sent": ids, "seg": self._seg}))
            for tid in ids:
                self._unacked[tid] = self._seg
            self._pending_count[self._seg] = self._pending_count.get(self._seg, 0) + len(ids)
            self._seg_count += len(ids)
            self.stats["spooled"] += len(ids)
        return new

    def acked(self, ids: Iterable[str]) -> int:
        """The learner answered for these ids; finished segments left empty are deleted."""
        done = [tid for tid in ids if tid in self._unacked]
        if not done:
            return 0
        self._write(self._journal, _jline({"acked": done}))
        self._forget(done)
        self.stats["acked"] += len(done)
        return len(done)

    def dropped(self, items: list[tuple[str, str, str]]) -> None:
        """(id, outcome, reason) for trajectories the worker itself threw away, never sent."""
        if items:
            self._write(self._journal, _jline({"dropped": [list(x) for x in items]}))
            self._forget([tid for tid, _, _ in items if tid in self._unacked])
            self.stats["dropped"] += len(items)

    def _forget(self, ids: list[str]) -> None:
        for tid in ids:
            seg = self._unacked.pop(tid)
            left = self._pending_count[seg] - 1
            if left:
                self._pending_count[seg] = left
                continue
            del self._pending_count[seg]
            if seg != self._seg:  # the current segment is still being written
                self._delete_segment(seg)

    # ---- reading -----------------------------------------------------------------------

    @property
    def unacked_ids(self) -> list[str]:
        return list(self._unacked)

    def unacked(self) -> list[Trajectory]:
        """The unacked trajectories, read back from their segments in the order sent (one whose
        payload is missing is logged and left out: the driver's report then finds it lost)."""
        want: dict[int, set[str]] = {}
        for tid, seg in self._unacked.items():
            want.setdefault(seg, set()).add(tid)
        found: dict[str, Trajectory] = {}
        for seg, ids in sorted(want.items()):
            for record in read_jsonl(self._segment_path(seg)):
                if record.get("id") in ids:
                    found[record["id"]] = _decode(record["p"])
        missing = [tid for tid in self._unacked if tid not in found]
        if missing:
            log.error("spool %s: %d unacked payloads missing", self.dir, len(missing))
        return [found[tid] for tid in self._unacked if tid in found]

    def close(self) -> None:
        for f in (self._seg_file, self._journal):
            if f is not None:
                f.close()
        self._seg_file = None

    # ---- files -------------------------------------------------------------------------

    def _segment_path(self, seg: int) -> Path:
        return self.dir / f"seg-{seg:06d}.jsonl"

    def _next_segment(self) -> None:
        if self._seg_file is not None:
            self._seg_file.close()
            finished = self._seg
            self._seg += 1
            if finished not in self._pending_count:
                self._delete_segment(finished)
        self._seg_file = self._open_append(self._segment_path(self._seg))
        self._seg_count = 0

    def _delete_segment(self, seg: int) -> None:
        try:
            os.remove(self._segment_path(seg))
            self.stats["segments_deleted"] += 1
        except FileNotFoundError:
            pass

    @staticmethod
    def _open_append(path: Path):
        f = path.open("ab")
        if f.tell() and path.read_bytes()[-1:] != b"\n":  # torn by a kill: start a fresh line
            f.write(b"\n")
            f.flush()
        return f

    @staticmethod
    def _write(f, text: str) -> None:
        f.write(text.encode())
        f.flush()


def _jline(record: dict) -> str:
    return json.dumps(record, separators=(",", ":")) + "\n"


def _encode(t: Trajectory) -> str:
    return base64.b64encode(trajectory_to_proto(t).SerializeToString()).decode("ascii")


def _decode(text: str) -> Trajectory:
    msg = trajectory_pb2.Trajectory.FromString(base64.b64decode(text))
    return trajectory_from_proto(msg)
