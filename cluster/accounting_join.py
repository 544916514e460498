"""The accounting join of cluster/accounting_report.py, on disk: bounded memory in the run's length.

The report joins every id a worker's spool journal names with the learner's audit. Done in
Python sets and dicts it held every id of the run in the driver at once (the journals read
whole by `read_journal`, the audit's first line per id, the joined lines: some hundreds of MB
after a soak of 4 * 10^5 trajectories). Here the journals and the audit are read line by line
into a temporary SQLite file next to the run (deleted after), the join is one query per
worker, and the joined lines stream out to `<run_dir>/audit.jsonl`; what stays in memory is
the learner's in-flight ids (bounded by its buffer) and counters.

The rules are accounting_report's, unchanged (its module doc): an id's outcome is the learner's
first outcome line for it, else the worker's own drop, else in flight at the end (the learner's
snapshot, or unacked in the spool, or answered only by a learner process that died before a
checkpoint covered the answer, when the worker never met the final one: see `_line`), else lost;
ids in order of their worker's journal (workers
by name), a worker's drops of ids it never sent after its sent ones; an id in two journals is a
conflict, counted once at the second; a `maybe_duplicate` refusal of an id whose outcome the
audit already has is a duplicate, not a second outcome.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from rewardloop.actors.spool_replay import covered
from rewardloop.learner.accounting import OUTCOMES
from rewardloop.run_outputs import iter_raw_records, iter_records

BATCH = 4096  # audit lines per insert
DROPPED_ONLY = 1 << 40  # journal order of a worker's drops of ids it never sent: after the sent

_SCHEMA = """
CREATE TABLE journal (worker TEXT, id TEXT, ord INTEGER, sent INTEGER, PRIMARY KEY (worker, id));
CREATE TABLE acked (worker TEXT, id TEXT, PRIMARY KEY (worker, id));
CREATE TABLE dropped (worker TEXT, id TEXT, outcome TEXT, reason TEXT, PRIMARY KEY (worker, id));
CREATE TABLE learner (id TEXT PRIMARY KEY, line TEXT, n INTEGER);
CREATE TABLE answer (worker TEXT, id TEXT, inc TEXT, v INTEGER, PRIMARY KEY (worker, id));
CREATE TABLE released (worker TEXT, id TEXT, PRIMARY KEY (worker, id));
"""
# spool_replay.note_answer in SQL: an id's first answer from its newest answerer
_ANSWER = (
    "INSERT INTO answer VALUES (?, ?, ?, ?) ON CONFLICT (worker, id) DO UPDATE"
    " SET inc = excluded.inc, v = excluded.v WHERE answer.inc != excluded.inc"
)


class Join:
    """One report's join (a context manager: the SQLite file goes when it closes)."""

    def __init__(self, directory: Path):
        Path(directory).mkdir(parents=True, exist_ok=True)
        fd, self._path = tempfile.mkstemp(prefix=".accounting-", suffix=".sqlite", dir=directory)
        os.close(fd)
        self.db = sqlite3.connect(self._path, isolation_level=None)
        self.db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + _SCHEMA)
        self.duplicates: Counter[str] = Counter()  # duplicate lines by the worker they name
        self.workers: list[str] = []
        self.durable: dict[str, dict[str, int]] = {}  # worker -> {incarnation: durable version}
        self.answerers: dict[str, set[str]] = {}  # worker -> learner processes that answered it

    def __enter__(self) -> Join:
        return self

    def __exit__(self, *exc) -> None:
        self.db.close()
        Path(self._path).unlink(missing_ok=True)

    def add_journal(self, worker: str, path: Path) -> None:
        """One worker's journal (actors/spool.py), as `read_journal` reads it."""
        self.workers.append(worker)
        db, n = self.db, 0
        durable, answerers = (
            self.durable.setdefault(worker, {}),
            self.answerers.setdefault(worker, set()),
        )
        db.execute("BEGIN")
        for record in iter_records(path):
            sent = record.get("sent", ())
            db.executemany(
                "INSERT OR IGNORE INTO journal VALUES (?, ?, ?, 1)",
                ((worker, tid, n + k) for k, tid in enumerate(sent, start=1)),
            )
            n += len(sent)
            if "acked" in record:
                db.executemany(
                    "INSERT OR IGNORE INTO acked VALUES (?, ?)",
                    ((worker, tid) for tid in record["acked"]),
                )
                inc, version = str(record.get("inc", "")), int(record.get("v", 0))
                if inc:
                    answerers.add(inc)
                    db.executemany(
                        _ANSWER, ((worker, tid, inc, version) for tid in record["acked"])
                    )
                else:  # a final answer: nothing to wait for
                    db.executemany(
                        "DELETE FROM answer WHERE worker = ? AND id = ?",
                        ((worker, tid) for tid in record["acked"]),
                    )
            if "durable" in record:
                inc = str(record.get("inc", ""))
                durable[inc] = max(durable.get(inc, 0), int(record["durable"]))
            db.executemany(
                "INSERT OR IGNORE INTO released VALUES (?, ?)",
                ((worker, tid) for tid in record.get("released", ())),
            )
            for tid, outcome, reason in record.get("dropped", ()):
                db.execute(
                    "INSERT INTO dropped VALUES (?, ?, ?, ?) ON CONFLICT (worker, id) DO UPDATE"
                    " SET outcome = excluded.outcome, reason = excluded.reason",
                    (worker, tid, outcome, reason),
                )
        db.execute(  # drops of ids never sent: after the sent ones, in the order first dropped
            "INSERT OR IGNORE INTO journal SELECT worker, id, ? + rowid, 0 FROM dropped"
            " WHERE worker = ?",
            (DROPPED_ONLY, worker),
        )
        db.execute("COMMIT")

    def add_audit(self, path: Path) -> None:
        """The learner's audit: the first outcome line per id, and how many it has."""
        db, batch = self.db, []

        def flush() -> None:
            db.executemany(
                "INSERT INTO learner VALUES (?, ?, 1) ON CONFLICT (id) DO UPDATE SET n = n + 1",
                batch,
            )
            batch.clear()

        db.execute("BEGIN")
        for raw, line in iter_raw_records(path):
            outcome = line.get("outcome")
            if outcome == "duplicate":
                self.duplicates[line.get("worker", "")] += 1
            elif outcome in OUTCOMES:
                row = (line.get("id", ""), raw.decode("utf-8"))
                if line.get("maybe_duplicate") and outcome != "trained":
                    flush()  # whether the id is known depends on every line before
                    if db.execute("INSERT OR IGNORE INTO learner VALUES (?, ?, 1)", row).rowcount:
                        continue  # the id's first outcome
                    self.duplicates[line.get("worker", "")] += 1  # forgotten, re-sent, decided
                    continue
                batch.append(row)
                if len(batch) >= BATCH:
                    flush()
        flush()
        db.execute("COMMIT")

    def joined(
        self, in_flight: set[str], conflict: Callable[[], None], final: str = ""
    ) -> Iterator[dict]:
        """The joined lines, worker by worker in journal order, then the learner's outcomes of
        ids no journal has; `conflict()` is called for each id met in a second journal.
        `final`: the learner process that wrote the in-flight record ("" if none did)."""
        db = self.db
        db.execute("CREATE INDEX journal_id ON journal (id, worker)")
        for worker in sorted(self.workers):  # by name: an id is an earlier worker's first
            cursor = db.execute(
                "SELECT j.id, j.sent, l.line, d.outcome, d.reason, a.id IS NOT NULL,"
                " EXISTS (SELECT 1 FROM journal e WHERE e.id = j.id AND e.worker < j.worker),"
                " n.inc, n.v, r.id IS NOT NULL"
                " FROM journal j"
                " LEFT JOIN learner l ON l.id = j.id"
                " LEFT JOIN dropped d ON d.worker = j.worker AND d.id = j.id"
                " LEFT JOIN acked a ON a.worker = j.worker AND a.id = j.id"
                " LEFT JOIN answer n ON n.worker = j.worker AND n.id = j.id"
                " LEFT JOIN released r ON r.worker = j.worker AND r.id = j.id"
                " WHERE j.worker = ? ORDER BY j.ord",
                (worker,),
            )
            durable = self.durable.get(worker, {})
            met_final = final in self.answerers.get(worker, ())
            for tid, sent, learner, dropped, reason, acked, earlier, inc, v, released in cursor:
                if earlier:
                    conflict()  # one id in two spools would be a bug in id generation
                    continue
                line = _line(tid, worker, sent, learner, dropped, reason, acked, in_flight)
                # Answered only by a learner process that died before a checkpoint covered the
                # answer (so its successor never knew the id), still held in the spool, and the
                # worker never met the final process, which would have made it re-send the id
                # (actors/spooled_sink.py orphans): the run ended with it in the spool, as if
                # unacked. An id the final process answered and then has no outcome for, or that
                # a worker talking to it failed to re-send, stays lost.
                orphan = inc is not None and inc != final and not covered((inc, v), durable)
                if (
                    line["outcome"] == "lost"
                    and final
                    and orphan
                    and not released
                    and not met_final
                ):
                    line.update(
                        outcome="in_flight_at_end",
                        source=f"worker spool (answered by learner {inc}, which died before a "
                        "checkpoint covered it; the run ended before the worker met the next)",
                    )
                yield line
        outside = db.execute(
            "SELECT line FROM learner WHERE id NOT IN (SELECT id FROM journal) ORDER BY rowid"
        )
        for (learner,) in outside:
            yield {**json.loads(learner), "source": "learner (no spool)"}

    def ids_with_two_outcomes(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM learner WHERE n > 1").fetchone()[0]


def _line(tid, worker, sent, learner, dropped, reason, acked, in_flight) -> dict:
    line = {"id": tid, "worker": worker}
    if learner is not None:
        first = json.loads(learner)
        line.update(
            outcome=first["outcome"],
            source="learner",
            **{k: first[k] for k in ("version", "step", "reason") if k in first},
        )
    elif dropped is not None:
        line.update(outcome=dropped, source="worker", reason=reason)
    elif tid in in_flight:
        line.update(outcome="in_flight_at_end", source="learner")
    elif sent and not acked:
        line.update(outcome="in_flight_at_end", source="worker spool (unacked)")
    else:
        line.update(outcome="lost", source="")
    return line
