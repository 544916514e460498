"""SQLite opened the way every durable store of rewardloop needs it (the feedback gateway's
ratings, the serve path's response log): WAL, `synchronous=FULL` so an acked write survives a
SIGKILL or power loss, a bounded busy wait, and one write transaction at a time. `WalStore`
is the base both stores share: the file, its lock, the schema and a table of counters."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BUSY_TIMEOUT_MS = 5000


def open_wal(path: str | Path) -> tuple[sqlite3.Connection, str]:
    """(connection in autocommit mode, shareable across threads, the journal mode in effect)."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    journal_mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    db.execute("PRAGMA synchronous = FULL")
    return db, journal_mode


@contextmanager
def transaction(db: sqlite3.Connection, lock: threading.Lock) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT under `lock`, rolled back on any exception."""
    with lock:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


COUNTERS_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
)


class WalStore:
    """One SQLite file (`open_wal`) behind one lock, `schema` applied, plus `counters`.

    Subclasses read under `self._lock`, write in `with self._tx() as db:` and count events
    with `self._bump(db, name)` inside that transaction, so a count commits with its change.
    `path` ":memory:" is a private in-memory database; any other gets its folder made.
    """

    def __init__(self, path: str, schema: str):
        self.path = path
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db, self.journal_mode = open_wal(path)
        self._db.executescript(schema + "\n" + COUNTERS_SCHEMA)

    def _tx(self):
        return transaction(self._db, self._lock)

    @staticmethod
    def _bump(db: sqlite3.Connection, name: str, n: int = 1) -> None:
        """Add `n` to counter `name` (nothing for 0), in the caller's transaction."""
        if n:
            db.execute(
                "INSERT INTO counters (name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                (name, n),
            )

    @staticmethod
    def _counter_values(db: sqlite3.Connection) -> dict[str, int]:
        """Every counter (call under the lock)."""
        return dict(db.execute("SELECT name, value FROM counters").fetchall())

    def close(self) -> None:
        with self._lock:
            self._db.close()
