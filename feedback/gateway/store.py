"""The durable feedback store: items awaiting feedback, ratings, and what became of each item.

SQLite in WAL mode with `synchronous=FULL`, so a rating is on disk before SubmitRating is
acked and a crash loses nothing that was acked. One connection behind a lock serves every
thread of the gateway; another process (`rewardloop feedback forget`) may open the same file
at the same time (WAL + busy timeout).

An item's life: pending -> rated | expired | blocked, then delivered once its publisher acks
the outcome. Raw ratings live in their own table so `forget` and the retention purge can
delete them; rater ids are pseudonyms, and a forgotten rater is remembered only by a hash so
that their later ratings are refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from rewardloop.durable_db import WalStore
from rewardloop.errors import InvalidInput, NotFound

from .records import BLOCKED, EXPIRED_KIND, RATED, Item, Outcome, SubmitResult

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY,
    publisher TEXT NOT NULL,
    prompt TEXT NOT NULL,
    completion TEXT NOT NULL,
    metadata TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    state TEXT NOT NULL,            -- pending | rated | expired | blocked
    reward REAL,
    drop_ INTEGER NOT NULL DEFAULT 0,
    rater TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    done_at REAL,
    delivered INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS items_by_state ON items (state, expires_at);
CREATE INDEX IF NOT EXISTS items_by_publisher ON items (publisher, delivered, state);
CREATE TABLE IF NOT EXISTS ratings (
    key TEXT PRIMARY KEY,           -- the idempotency key
    item_id TEXT NOT NULL,
    rater TEXT NOT NULL,
    value REAL NOT NULL,
    stars INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ratings_by_rater ON ratings (rater);
CREATE INDEX IF NOT EXISTS ratings_by_time ON ratings (created_at);
CREATE TABLE IF NOT EXISTS forgotten (rater_hash TEXT PRIMARY KEY, forgotten_at REAL NOT NULL);
"""

DAY_S = 86400.0


def rater_hash(rater: str) -> str:
    return hashlib.sha256(rater.encode()).hexdigest()


class FeedbackStore(WalStore):
    """Durable items, ratings and outcomes. Thread-safe; every method is one transaction."""

    def __init__(
        self,
        path: str | Path,
        *,
        expiry_s: float = 3600.0,
        expiry_outcome: str = "drop",
        neutral_reward: float = 0.5,
        blocked_reward: float = -1.0,
        retention_days: float = 30.0,
        clock: Callable[[], float] = time.time,
    ):
        super().__init__(
            str(path) if str(path) == ":memory:" else str(Path(path).expanduser()), SCHEMA
        )
        self.expiry_s = expiry_s
        self.expiry_outcome = expiry_outcome
        self.neutral_reward = neutral_reward
        self.blocked_reward = blocked_reward
        self.retention_days = retention_days
        self.clock = clock

    @classmethod
    def from_config(cls, cfg, clock: Callable[[], float] = time.time) -> FeedbackStore:
        """Open the store a `FeedbackConfig` names."""
        return cls(
            cfg.store_path,
            expiry_s=cfg.expiry_s,
            expiry_outcome=cfg.expiry_outcome,
            neutral_reward=cfg.neutral_reward,
            blocked_reward=cfg.blocked_reward,
            retention_days=cfg.retention_days,
            clock=clock,
        )

    # ---- publishing and listing -------------------------------------------------------------

    def publish(
        self, items: Iterable[Item], publisher: str, blocked: dict[str, str] | None = None
    ) -> int:
        """Store items as pending (or blocked with a reason); re-publishing an id is a no-op.

        Returns how many items were new.
        """
        blocked = blocked or {}
        now = self.clock()
        new = 0
        with self._tx() as db:
            for it in items:
                created = it.created_at or now
                expires = it.expires_at if it.expires_at > now else created + self.expiry_s
                is_blocked = it.id in blocked
                cur = db.execute(
                    "INSERT OR IGNORE INTO items (id, publisher, prompt, completion, metadata, created_at,"
                    " expires_at, state, reward, reason, done_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        it.id,
                        publisher,
                        "" if is_blocked else it.prompt,  # blocked content is not kept
                        "" if is_blocked else it.completion,
                        json.dumps(it.metadata),
                        created,
                        expires,
                        BLOCKED if is_blocked else "pending",
                        self.blocked_reward if is_blocked else None,
                        blocked.get(it.id, ""),
                        now if is_blocked else None,
                    ),
                )
                new += cur.rowcount
                self._bump(db, "blocked" if is_blocked else "published", cur.rowcount)
        return new

    def pending(self, limit: int = 20) -> list[Item]:
        """Items still waiting for a rating, oldest first (so they are rated before they expire)."""
        self.expire()
        with self._lock:
            rows = self._db.execute(
                "SELECT id, prompt, completion, metadata, created_at, expires_at FROM items"
                " WHERE state = 'pending' AND expires_at > ? ORDER BY created_at, id LIMIT ?",
                (self.clock(), limit),
            ).fetchall()
        return [Item(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5]) for r in rows]

    # ---- ratings ----------------------------------------------------------------------------

    def submit(
        self, item_id: str, value: float, rater: str, key: str = "", stars: int = 0
    ) -> SubmitResult:
        """Store one rating durably. Idempotent by `key` (default: item id + rater).

        Unknown item -> NotFound; a forgotten rater -> InvalidInput; an item no longer pending
        -> not stored, with the reason.
        """
        key = key or f"{item_id}\x1f{rater}"
        now = self.clock()
        with self._tx() as db:
            if db.execute("SELECT 1 FROM ratings WHERE key = ?", (key,)).fetchone():
                self._bump(db, "duplicates")
                return SubmitResult(stored=True, duplicate=True)
            if db.execute(
                "SELECT 1 FROM forgotten WHERE rater_hash = ?", (rater_hash(rater),)
            ).fetchone():
                raise InvalidInput(
                    "rater", "this rater asked to be forgotten; their ratings are not accepted"
                )
            row = db.execute(
                "SELECT state, expires_at, created_at FROM items WHERE id = ?", (item_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"item_id: unknown item {item_id!r}")
            state, expires_at, created_at = row
            if state != "pending" or expires_at <= now:
                self._bump(db, "late")
                why = (
                    "item already rated"
                    if state == RATED
                    else f"item is {state if state != 'pending' else EXPIRED_KIND}"
                )
                return SubmitResult(stored=False, reason=why)
            db.execute(
                "INSERT INTO ratings (key, item_id, rater, value, stars, created_at) VALUES (?,?,?,?,?,?)",
                (key, item_id, rater, value, stars, now),
            )
            db.execute(
                "UPDATE items SET state = ?, reward = ?, rater = ?, done_at = ? WHERE id = ?",
                (RATED, value, rater, now, item_id),
            )
            self._bump(db, "rated")
        return SubmitResult(stored=True, latency_s=max(0.0, now - created_at))

    def rating(self, item_id: str) -> dict | None:
        """The raw rating of an item (inspection and tests)."""
        with self._lock:
            row = self._db.execute(
                "SELECT key, rater, value, stars, created_at FROM ratings WHERE item_id = ?",
                (item_id,),
            ).fetchone()
        if row is None:
            return None
        return {
            "key": row[0],
            "rater": row[1],
            "value": row[2],
            "stars": row[3],
            "created_at": row[4],
        }

    def ratings_by(self, rater: str) -> int:
        with self._lock:
            return self._db.execute(
                "SELECT COUNT(*) FROM ratings WHERE rater = ?", (rater,)
            ).fetchone()[0]

    # ---- outcomes ---------------------------------------------------------------------------

    def expire(self) -> int:
        """Apply the expiry outcome to pending items past their time; returns how many."""
        drop = self.expiry_outcome == "drop"
        with self._tx() as db:
            n = db.execute(
                "UPDATE items SET state = ?, drop_ = ?, reward = ?, done_at = expires_at"
                " WHERE state = 'pending' AND expires_at <= ?",
                (EXPIRED_KIND, int(drop), math.nan if drop else self.neutral_reward, self.clock()),
            ).rowcount
            self._bump(db, "expired_drop" if drop else "expired_neutral", n)
        return n

    def collect(
        self, publisher: str, ack_ids: Iterable[str] = (), limit: int = 256
    ) -> list[Outcome]:
        """Mark `ack_ids` delivered, then return this publisher's undelivered outcomes."""
        self.expire()
        ack = list(ack_ids)
        with self._tx() as db:
            for i in range(0, len(ack), 500):
                chunk = ack[i : i + 500]
                db.execute(
                    f"UPDATE items SET delivered = 1 WHERE publisher = ? AND state != 'pending'"
                    f" AND id IN ({','.join('?' * len(chunk))})",
                    (publisher, *chunk),
                )
            rows = db.execute(
                "SELECT id, state, reward, drop_, rater, done_at - created_at, reason FROM items"
                " WHERE publisher = ? AND delivered = 0 AND state != 'pending' ORDER BY done_at LIMIT ?",
                (publisher, limit),
            ).fetchall()
        return [
            Outcome(
                r[0],
                r[1],
                math.nan if r[2] is None else r[2],
                bool(r[3]),
                r[4],
                max(0.0, r[5] or 0.0),
                r[6],
            )
            for r in rows
        ]

    # ---- privacy ----------------------------------------------------------------------------

    def forget(self, rater: str) -> int:
        """Delete every rating of `rater` and refuse their later ones; returns ratings deleted.

        An item they rated whose outcome was not yet delivered goes back to pending (another
        rater may rate it, or it expires); a delivered one is deleted with its rating.
        """
        with self._tx() as db:
            n = db.execute("DELETE FROM ratings WHERE rater = ?", (rater,)).rowcount
            db.execute("DELETE FROM items WHERE rater = ? AND delivered = 1", (rater,))
            db.execute(
                "UPDATE items SET state = 'pending', reward = NULL, rater = '', done_at = NULL"
                " WHERE rater = ? AND state = ?",
                (rater, RATED),
            )
            db.execute(
                "INSERT OR REPLACE INTO forgotten (rater_hash, forgotten_at) VALUES (?, ?)",
                (rater_hash(rater), self.clock()),
            )
            self._bump(db, "forgotten_ratings", n)
            self._bump(db, "forgotten_raters")
        return n

    def purge(self) -> dict[str, int]:
        """Delete raw ratings and finished items older than the retention period."""
        if self.retention_days <= 0:
            return {"ratings": 0, "items": 0}
        cutoff = self.clock() - self.retention_days * DAY_S
        with self._tx() as db:
            ratings = db.execute("DELETE FROM ratings WHERE created_at < ?", (cutoff,)).rowcount
            items = db.execute(
                "DELETE FROM items WHERE state != 'pending' AND done_at < ?", (cutoff,)
            ).rowcount
            self._bump(db, "purged_ratings", ratings)
            self._bump(db, "purged_items", items)
        return {"ratings": ratings, "items": items}

    # ---- inspection -------------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        with self._lock:
            counts = self._counter_values(self._db)
            pending = self._db.execute(
                "SELECT COUNT(*) FROM items WHERE state = 'pending'"
            ).fetchone()[0]
        return {**counts, "pending": pending}
