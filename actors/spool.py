"""A rollout worker's spool: every trajectory it sends is on disk first, so none is lost with it.

A worker killed with SIGKILL loses its memory, not its spool. Ray restarts the actor with the
same worker id (`rollout.max_restarts`); the new process opens the same spool and re-sends what
was never acked, first. The learner de-duplicates by id, so a trajectory it had admitted comes
back as a duplicate and is trained on at most once. The driver reads every spool at the end of
the run: the union of their ids is what was generated (`summary.json` accounting).

Layout of `<spool_dir>/<worker_id>/` (`rollout.spool_dir`, default the run directory's `spool/`;
with workers on several nodes it must be a volume they all share with the driver):

    journal.jsonl   append-only, ids only: {"sent": [ids], "seg": n} before a send;
                    {"acked": [ids], "inc": s, "v": n} once learner process `inc` answered for
                    them (accepted, duplicate or rejected) at its version `v`; {"durable": d,
                    "inc": s} when that process's newest complete resume checkpoint reached
                    version d; {"released": [ids]} for answered ids let go unconfirmed (past
                    `retain_acked`); {"dropped": [[id, outcome, reason], ...]} for what the worker
                    threw away itself (a rating that expired, a non-finite reward)
    seg-<n>.jsonl   the payloads: one {"id", "p": base64 of the Trajectory protobuf} per line

Held until durable, not merely acked: an Ack says "the learner has it", not "it survives the
learner". A learner killed between two resume checkpoints comes back from the older one without
what it answered since, and if the worker dies with it, no memory has those trajectories any
more. So an id stays held until the process that answered it says (`durable_version` on its
Acks, trajectory.proto) that a complete checkpoint covers the answer (its version is below the
durable one): then the learner's checkpoint holds its outcome, or the trajectory itself, and the
id's own audit line. An answer from a sink that names no learner process (`inc` "", or an old
`{"acked": [ids]}` line) is final at once. A new process (the worker restarted) re-sends every
held id (`unacked()`); a live worker re-sends the ids answered by an earlier learner process
once another one answers (`orphans()`, actors/spooled_sink.py). The learner de-duplicates by id:
what its checkpoint had comes back a duplicate, what it lost is trained once.

Bounded: a segment holds SEGMENT_TRAJECTORIES payloads and is deleted once none of its ids is
held, so the payloads on disk are what is unanswered (at most the worker's credits plus one
segment) and what was answered since the learner's last checkpoint (one checkpoint interval's
worth; at most `retain_acked`, oldest released past that, counted in `released`). Memory holds
only the held ids, on reopening too (the journal is replayed line by line: spool_replay.py).
The journal keeps the ids of everything sent (about 50 bytes each, plus one line per answered
batch): that is the worker's audit, read line by line by the driver's report
(cluster/accounting_join.py; `read_journal` reads it whole, for tests).

Durability: each append is one write, flushed to the OS before the send that depends on it
(a SIGKILL loses nothing; a power cut may lose the last lines: no fsync per send). A line torn
by a kill mid-write is skipped when read. The payload is written before the journal line, so
an id in the journal always has its payload while it is held.
"""

from __future__ import annotations

import base64
import collections
import itertools
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from rewardloop.actors.spool_replay import covered as _covered
from rewardloop.actors.spool_replay import note_answer as _note
from rewardloop.actors.spool_replay import replay
from rewardloop.pb import trajectory_pb2
from rewardloop.run_outputs import read_records
from rewardloop.trajectory import Trajectory
from rewardloop.wire import trajectory_from_proto, trajectory_to_proto

log = logging.getLogger(__name__)
JOURNAL = "journal.jsonl"
SEGMENT_TRAJECTORIES = 512
RETAIN_ACKED = 4096  # the default of rollout.retain_acked


def spool_root(cfg) -> Path:
    """The run's spool directory: rollout.spool_dir, or the run directory's spool/."""
    return Path(cfg.rollout.spool_dir) if cfg.rollout.spool_dir else Path(cfg.out) / "spool"


def read_journal(worker_dir: str | Path) -> dict:
    """What one worker's journal says, every id of it (the driver's report; a reopened spool
    replays it instead, keeping only what is held: actors/spool_replay.py):
    {"sent": {id: seg}, "acked": set (answered, by anyone), "dropped": {id: (outcome, reason)},
    "answers": {id: (incarnation, version)} (the first answer of the id's newest answerer;
    none for a final answer), "durable": {incarnation: version}, "released": set}."""
    sent: dict[str, int] = {}
    acked: set[str] = set()
    dropped: dict[str, tuple[str, str]] = {}
    answers: dict[str, tuple[str, int]] = {}
    durable: dict[str, int] = {}
    released: set[str] = set()
    for record in read_records(Path(worker_dir) / JOURNAL):
        for tid in record.get("sent", ()):
            sent[tid] = int(record.get("seg", 0))
        if "acked" in record:
            inc, version = str(record.get("inc", "")), int(record.get("v", 0))
            for tid in record["acked"]:
                acked.add(tid)
                _note(answers, tid, inc, version)
        if "durable" in record:
            inc = str(record.get("inc", ""))
            durable[inc] = max(durable.get(inc, 0), int(record["durable"]))
        released.update(record.get("released", ()))
        for tid, outcome, reason in record.get("dropped", ()):
            dropped[tid] = (outcome, reason)
    return {
        "sent": sent,
        "acked": acked,
        "dropped": dropped,
        "answers": answers,
        "durable": durable,
        "released": released,
    }


class Spool:
    """One worker's spool (not thread-safe: the worker's loop is its only user)."""

    def __init__(
        self,
        directory: str | Path,
        segment_trajectories: int = SEGMENT_TRAJECTORIES,
        retain_acked: int = RETAIN_ACKED,
    ):
        if segment_trajectories < 1:
            raise ValueError(f"segment_trajectories: must be >= 1, got {segment_trajectories}")
        if retain_acked < 0:
            raise ValueError(f"retain_acked: must be >= 0, got {retain_acked}")
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.segment_trajectories, self.retain_acked = segment_trajectories, retain_acked
        # the journal replayed line by line, keeping only what is held (spool_replay.py): the
        # memory of reopening is what was held, not every id the run ever sent
        found = replay(self.dir / JOURNAL, retain_acked)
        self._durable: dict[str, int] = found.durable
        # held: sent, and neither dropped, released, nor answered durably (or finally)
        self._held: dict[str, int] = found.held
        self._answer: collections.OrderedDict[str, tuple[str, int]] = found.answers
        self.stats = {
            "spooled": found.spooled,  # ever, this spool (earlier incarnations included)
            "acked": found.acked,
            "dropped": found.dropped,
            "found_unacked": len(self._held),  # on opening: what a dead process left held
            "found_answered": len(self._answer),  # of those: answered, not yet durable
            "durable": 0,  # answered ids let go once a learner checkpoint covered them
            "released": found.released,  # let go unconfirmed (past retain_acked)
            "segments_deleted": 0,
        }
        self._pending_count: dict[int, int] = {}
        for seg in self._held.values():
            self._pending_count[seg] = self._pending_count.get(seg, 0) + 1
        segs = [int(p.stem.split("-", 1)[1]) for p in self.dir.glob("seg-*.jsonl")]
        self._seg = max([*segs, found.max_seg, 0]) + 1  # a fresh segment per process
        self._seg_count = 0
        self._seg_file = None
        self._journal = self._open_append(self.dir / JOURNAL)
        for seg in segs:  # finished segments with nothing held (compaction a kill cut short)
            if seg not in self._pending_count:
                self._delete_segment(seg)

    # ---- writing -----------------------------------------------------------------------

    def append(self, trajs: Iterable[Trajectory]) -> list[Trajectory]:
        """Spool the trajectories not spooled yet (payloads, then their ids); returns those."""
        new = [t for t in trajs if t.id not in self._held]
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
                self._held[tid] = self._seg
            self._pending_count[self._seg] = self._pending_count.get(self._seg, 0) + len(ids)
            self._seg_count += len(ids)
            self.stats["spooled"] += len(ids)
        return new

    def acked(self, ids: Iterable[str]) -> int:
        """A final answer for these ids (a sink that names no learner process)."""
        return self.answered(ids, "", 0)

    def answered(self, ids: Iterable[str], incarnation: str, version: int) -> int:
        """Learner process `incarnation` answered these ids at its `version`. They stay held
        until its durable version passes `version` (`durable`); with no incarnation, or
        `retain_acked` 0, they are done now. Returns how many were held."""
        done = [tid for tid in ids if tid in self._held]
        if not done:
            return 0
        record: dict = {"acked": done}
        if incarnation:
            record.update(inc=incarnation, v=version)
        self._write(self._journal, _jline(record))
        self.stats["acked"] += len(done)
        if not incarnation or not self.retain_acked:
            self._forget(done)
            return len(done)
        for tid in done:
            _note(self._answer, tid, incarnation, version)
        covered = [t for t in done if _covered(self._answer.get(t), self._durable)]
        self._forget(covered)
        self.stats["durable"] += len(covered)
        self._bound()
        return len(done)

    def durable(self, incarnation: str, version: int) -> int:
        """Learner process `incarnation` has a complete checkpoint at `version`: what it
        answered below that is done. Returns how many ids that let go."""
        if not incarnation or version <= self._durable.get(incarnation, 0):
            return 0
        self._durable[incarnation] = version
        self._write(self._journal, _jline({"durable": version, "inc": incarnation}))
        covered = [t for t, (inc, v) in self._answer.items() if inc == incarnation and v < version]
        self._forget(covered)
        self.stats["durable"] += len(covered)
        return len(covered)

    def dropped(self, items: list[tuple[str, str, str]]) -> None:
        """(id, outcome, reason) for trajectories the worker itself threw away, never sent."""
        if items:
            self._write(self._journal, _jline({"dropped": [list(x) for x in items]}))
            self._forget([tid for tid, _, _ in items if tid in self._held])
            self.stats["dropped"] += len(items)

    def _bound(self) -> None:
        over = len(self._answer) - self.retain_acked
        if over > 0:
            oldest = list(itertools.islice(self._answer, over))
            log.warning(
                "spool %s: %d answered trajectories released before a learner checkpoint "
                "covered them (raise rollout.retain_acked)",
                self.dir,
                over,
            )
            self._release(oldest)

    def _release(self, ids: list[str]) -> None:
        self._write(self._journal, _jline({"released": ids}))
        self._forget(ids)
        self.stats["released"] += len(ids)

    def _forget(self, ids: list[str]) -> None:
        for tid in ids:
            seg = self._held.pop(tid)
            self._answer.pop(tid, None)
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
        """The held ids: unanswered, or answered and not yet durable."""
        return list(self._held)

    @property
    def answered_held(self) -> int:
        """Of the held ids, those answered (waiting for a learner checkpoint)."""
        return len(self._answer)

    def orphans(self, incarnation: str) -> list[str]:
        """Held ids answered by another learner process than `incarnation` (it came back from
        a checkpoint that may lack them): to be sent again, oldest first."""
        return [t for t, (inc, _) in self._answer.items() if inc != incarnation]

    def unacked(self) -> list[Trajectory]:
        """Every held trajectory, read back in the order sent (what a restarted worker re-sends)."""
        return self.load(list(self._held))

    def load(self, ids: list[str]) -> list[Trajectory]:
        """These held trajectories from their segments, in the order given. One whose payload
        is missing is logged and released (the driver's report then finds it lost)."""
        want: dict[int, set[str]] = {}
        for tid in ids:
            if tid in self._held:
                want.setdefault(self._held[tid], set()).add(tid)
        found: dict[str, Trajectory] = {}
        for seg, wanted in sorted(want.items()):
            for record in read_records(self._segment_path(seg)):
                if record.get("id") in wanted:
                    found[record["id"]] = _decode(record["p"])
        missing = [tid for tid in ids if tid in self._held and tid not in found]
        if missing:
            log.error("spool %s: %d held payloads missing", self.dir, len(missing))
            self._release(missing)
        return [found[tid] for tid in ids if tid in found]

    def disk_bytes(self) -> dict:
        """What the spool takes on disk: {"segments": n, "segment_bytes", "journal_bytes"}."""
        segs = list(self.dir.glob("seg-*.jsonl"))
        return {
            "segments": len(segs),
            "segment_bytes": sum(_size(p) for p in segs),
            "journal_bytes": _size(self.dir / JOURNAL),
        }

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
        if f.tell() and _last_byte(path) != b"\n":  # torn by a kill: start a fresh line
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


def _last_byte(path: Path) -> bytes:
    """The file's last byte (not the whole journal read to find it)."""
    with path.open("rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
