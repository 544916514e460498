"""The durable response log: every served completion, its users' feedback, and the join.

SQLite in WAL mode with `synchronous=FULL`: a completion is on disk before its HTTP response
leaves, a rating before it is acked (a SIGKILL loses nothing anyone was told); tokens and
behavior log-probs are raw int32 / float32 bytes, the arrays the learner trains on.

A response's life (`state`):

    waiting --(rated, aggregation=earliest | wait_s over)--> queued --> trained
       |                                                       \\--> dropped (too stale)
       \\--(unrated after wait_s, feedback.unrated=drop)--> dropped

`take_ready` moves due responses to `queued` and hands them to the learner's buffer; a restart
puts `queued` back to `waiting` (the buffer was in memory), so nothing is lost or trained twice.
Users appear only as pseudonyms (HMAC of `user` with a per-deployment secret); `forget` deletes
a pseudonym's responses and feedback, remembers it to refuse later feedback, and keeps only
`trained_on` (which versions learned from that pseudonym, and how many responses).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rewardloop.durable_db import WalStore
from rewardloop.errors import InvalidInput, NotFound

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    user_key TEXT NOT NULL,
    prompt_key TEXT NOT NULL,
    prompt_ids BLOB NOT NULL,
    completion_ids BLOB NOT NULL,
    logprobs BLOB NOT NULL,
    version INTEGER NOT NULL,
    created_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'waiting',   -- waiting | queued | trained | dropped
    reward REAL,
    outcome TEXT NOT NULL DEFAULT '',        -- rated | default | unrated_drop | stale | blocked
    trained_version INTEGER
);
CREATE INDEX IF NOT EXISTS responses_by_state ON responses (state, created_at);
CREATE INDEX IF NOT EXISTS responses_by_user ON responses (user_key);
CREATE TABLE IF NOT EXISTS feedback (
    key TEXT PRIMARY KEY,
    response_id TEXT NOT NULL,
    user_key TEXT NOT NULL,
    value REAL NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_by_response ON feedback (response_id, created_at);
CREATE TABLE IF NOT EXISTS forgotten (user_key TEXT PRIMARY KEY, forgotten_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS trained_on (
    version INTEGER NOT NULL, user_key TEXT NOT NULL, responses INTEGER NOT NULL,
    PRIMARY KEY (version, user_key)
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass
class Logged:
    """One served completion as logged (and as the learner gets it once joined)."""

    id: str
    user_key: str
    prompt_key: str
    prompt_ids: np.ndarray
    completion_ids: np.ndarray
    logprobs: np.ndarray
    version: int
    created_at: float = 0.0
    reward: float = float("nan")
    outcome: str = ""


def _blob(a, dtype) -> bytes:
    return np.asarray(a, dtype=dtype).tobytes()


class ResponseLog(WalStore):
    """Durable responses, feedback and the join. Thread-safe; every method is one transaction."""

    def __init__(
        self,
        path: str | Path,
        *,
        wait_s: float = 86400.0,
        unrated: str = "default",
        default_reward: float = 0.0,
        aggregation: str = "earliest",
        secret: str = "",
        clock: Callable[[], float] = time.time,
    ):
        super().__init__(str(path), SCHEMA)
        self.wait_s, self.unrated, self.default_reward = wait_s, unrated, default_reward
        self.aggregation = aggregation
        self.clock = clock
        with self._tx() as db:  # the buffer died with the last process: due again
            db.execute("UPDATE responses SET state = 'waiting' WHERE state = 'queued'")
            row = db.execute("SELECT value FROM meta WHERE name = 'secret'").fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO meta VALUES ('secret', ?)", (secret or secrets.token_hex(32),)
                )
        self._secret = (secret or self._meta("secret")).encode()

    @classmethod
    def from_config(cls, path: str | Path, feedback, secret: str = "", clock=time.time):
        """Open the log at `path` with the join knobs of a FeedbackConfig."""
        return cls(
            path,
            wait_s=feedback.wait_s,
            unrated=feedback.unrated,
            default_reward=feedback.default_reward,
            aggregation=feedback.aggregation,
            secret=secret,
            clock=clock,
        )

    def _meta(self, name: str) -> str:
        with self._lock:
            return self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()[0]

    def user_key(self, user: str) -> str:
        """The pseudonym of a product's `user` (HMAC-SHA256 with this deployment's secret)."""
        return hmac.new(self._secret, user.encode(), hashlib.sha256).hexdigest()[:32]

    # ---- writing ----------------------------------------------------------------------------

    def log(self, rows: list[Logged]) -> None:
        """Write served completions durably (before their response is sent)."""
        now = self.clock()
        with self._tx() as db:
            for r in rows:
                db.execute(
                    "INSERT INTO responses (id, user_key, prompt_key, prompt_ids, completion_ids,"
                    " logprobs, version, created_at) VALUES (?,?,?,?,?,?,?,?)",
                    (
                        r.id,
                        r.user_key,
                        r.prompt_key,
                        _blob(r.prompt_ids, np.int32),
                        _blob(r.completion_ids, np.int32),
                        _blob(r.logprobs, np.float32),
                        r.version,
                        r.created_at or now,
                    ),
                )
            self._bump(db, "responses_logged", len(rows))

    def add_feedback(self, response_id: str, value: float, user_key: str, key: str = "") -> dict:
        """Store one rating durably; idempotent by `key` (default: response id + user).

        Unknown id -> NotFound (counted); a forgotten user, or a user who was not served this
        response -> InvalidInput. A rating after the response was trained on is kept, counted
        `feedback_late`, and changes nothing. Returns {stored, duplicate, joined_after_s}.
        """
        key = key or f"{response_id}\x1f{user_key}"
        now = self.clock()
        refusal: Exception | None = None
        with self._tx() as db:
            if db.execute("SELECT 1 FROM feedback WHERE key = ?", (key,)).fetchone():
                self._bump(db, "feedback_duplicate")
                return {"stored": True, "duplicate": True, "joined_after_s": 0.0}
            row = db.execute(
                "SELECT user_key, created_at, state FROM responses WHERE id = ?", (response_id,)
            ).fetchone()
            forgotten = (
                user_key
                and db.execute("SELECT 1 FROM forgotten WHERE user_key = ?", (user_key,)).fetchone()
            )
            if forgotten:
                self._bump(db, "feedback_refused_forgotten")
                refusal = InvalidInput("user", "this user asked to be forgotten; feedback refused")
            elif row is None:
                self._bump(db, "feedback_unknown_response")
                refusal = NotFound(f"response_id: unknown response {response_id!r}")
            elif user_key and user_key != row[0]:
                self._bump(db, "feedback_wrong_user")
                refusal = InvalidInput("user", "is not the user this response was served to")
            else:
                owner, created_at, state = row
                db.execute(
                    "INSERT INTO feedback VALUES (?,?,?,?,?)",
                    (key, response_id, owner, value, now),
                )
                late = state in ("queued", "trained")
                self._bump(db, "feedback_late" if late else "feedback")
        if refusal is not None:  # raised after the commit, so the count is kept
            raise refusal
        return {"stored": True, "duplicate": False, "joined_after_s": max(0.0, now - created_at)}

    # ---- the join ---------------------------------------------------------------------------

    def _reward(self, db: sqlite3.Connection, response_id: str) -> float | None:
        values = [
            v
            for (v,) in db.execute(
                "SELECT value FROM feedback WHERE response_id = ? ORDER BY created_at, rowid",
                (response_id,),
            )
        ]
        if not values:
            return None
        if self.aggregation == "earliest":
            return values[0]
        if self.aggregation == "latest":
            return values[-1]
        return sum(values) / len(values)

    def take_ready(self, limit: int = 256) -> list[Logged]:
        """Move due responses to `queued` and return them with their reward and outcome.

        Due: rated, with aggregation=earliest; or older than wait_s (rated: the aggregate;
        unrated: default_reward, or dropped and counted with feedback.unrated=drop).
        """
        now = self.clock()
        cutoff = now - self.wait_s
        out: list[Logged] = []
        with self._tx() as db:
            rated_sql = (
                "SELECT DISTINCT r.id FROM responses r JOIN feedback f ON f.response_id = r.id"
                " WHERE r.state = 'waiting'"
                + ("" if self.aggregation == "earliest" else " AND r.created_at <= ?")
                + " LIMIT ?"
            )
            args = (limit,) if self.aggregation == "earliest" else (cutoff, limit)
            ids = [i for (i,) in db.execute(rated_sql, args)]
            ids += [
                i
                for (i,) in db.execute(
                    "SELECT id FROM responses WHERE state = 'waiting' AND created_at <= ?"
                    " AND id NOT IN (SELECT response_id FROM feedback) LIMIT ?",
                    (cutoff, max(0, limit - len(ids))),
                )
            ]
            for rid in ids:
                reward = self._reward(db, rid)
                if reward is None and self.unrated == "drop":
                    db.execute(
                        "UPDATE responses SET state = 'dropped', outcome = 'unrated_drop'"
                        " WHERE id = ?",
                        (rid,),
                    )
                    self._bump(db, "unrated_dropped")
                    continue
                outcome = "rated" if reward is not None else "default"
                reward = self.default_reward if reward is None else reward
                db.execute(
                    "UPDATE responses SET state = 'queued', reward = ?, outcome = ? WHERE id = ?",
                    (reward, outcome, rid),
                )
                self._bump(db, f"joined_{outcome}")
                row = db.execute(
                    "SELECT user_key, prompt_key, prompt_ids, completion_ids, logprobs, version,"
                    " created_at FROM responses WHERE id = ?",
                    (rid,),
                ).fetchone()
                out.append(
                    Logged(
                        rid,
                        row[0],
                        row[1],
                        np.frombuffer(row[2], np.int32),
                        np.frombuffer(row[3], np.int32),
                        np.frombuffer(row[4], np.float32),
                        row[5],
                        row[6],
                        reward,
                        outcome,
                    )
                )
        return out

    def mark_trained(self, rows: list[tuple[str, str]], version: int) -> None:
        """Record that `version` was trained on these (response id, pseudonym) pairs, and per
        pseudonym how many."""
        with self._tx() as db:
            for rid, user_key in rows:
                db.execute(
                    "UPDATE responses SET state = 'trained', trained_version = ? WHERE id = ?",
                    (version, rid),
                )
                db.execute(
                    "INSERT INTO trained_on VALUES (?, ?, 1) ON CONFLICT(version, user_key)"
                    " DO UPDATE SET responses = responses + 1",
                    (version, user_key),
                )
            self._bump(db, "trained", len(rows))

    def mark_dropped(self, ids: list[str], outcome: str) -> None:
        """Responses the learner will never train on (e.g. `stale`: past serve.max_version_lag)."""
        with self._tx() as db:
            for rid in ids:
                db.execute(
                    "UPDATE responses SET state = 'dropped', outcome = ? WHERE id = ?",
                    (outcome, rid),
                )
            self._bump(db, f"dropped_{outcome}", len(ids))

    # ---- privacy ----------------------------------------------------------------------------

    def forget(self, user_key: str) -> dict:
        """Delete a pseudonym's responses and feedback and refuse their later feedback."""
        with self._tx() as db:
            responses = db.execute("DELETE FROM responses WHERE user_key = ?", (user_key,)).rowcount
            feedback = db.execute("DELETE FROM feedback WHERE user_key = ?", (user_key,)).rowcount
            db.execute("INSERT OR REPLACE INTO forgotten VALUES (?, ?)", (user_key, self.clock()))
            self._bump(db, "forgotten_users")
            self._bump(db, "forgotten_responses", responses)
        return {"responses": responses, "feedback": feedback}

    def is_forgotten(self, user_key: str) -> bool:
        with self._lock:
            q = "SELECT 1 FROM forgotten WHERE user_key = ?"
            return self._db.execute(q, (user_key,)).fetchone() is not None

    def trained_on(self, user_key: str) -> dict[int, int]:
        """{version: responses of this pseudonym it was trained on}."""
        with self._lock:
            rows = self._db.execute(
                "SELECT version, responses FROM trained_on WHERE user_key = ? ORDER BY version",
                (user_key,),
            ).fetchall()
        return dict(rows)

    # ---- inspection -------------------------------------------------------------------------

    def response(self, response_id: str) -> dict | None:
        with self._lock:
            row = self._db.execute(
                "SELECT user_key, version, state, reward, outcome, completion_ids, logprobs,"
                " created_at FROM responses WHERE id = ?",
                (response_id,),
            ).fetchone()
        if row is None:
            return None
        keys = ("user_key", "version", "state", "reward", "outcome")
        ids, lps = np.frombuffer(row[5], np.int32), np.frombuffer(row[6], np.float32)
        out = {"completion_ids": ids.tolist(), "logprobs": lps.tolist(), "created_at": row[7]}
        return dict(zip(keys, row[:5], strict=True)) | out

    def max_version(self) -> int:
        """The newest version any logged response was served by (-1 if none)."""
        with self._lock:
            row = self._db.execute("SELECT MAX(version) FROM responses").fetchone()
        return -1 if row[0] is None else int(row[0])

    def counters(self) -> dict[str, int]:
        with self._lock:
            counts = self._counter_values(self._db)
            states = self._db.execute(
                "SELECT state, COUNT(*) FROM responses GROUP BY state"
            ).fetchall()
        return {**counts, **{f"state_{s}": n for s, n in states}}
