"""The gateway's logic, free of any transport: auth, validation, content check, store.

The gRPC servicer and the HTTP app both translate their requests into these calls, so the two
speak the same contract, validate the same way and count errors in one place. Every bad
request raises a `RewardLoopError` naming the field; the transports map it to a status.
"""

from __future__ import annotations

import hmac
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable

from rewardloop import auth
from rewardloop.errors import (
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    RewardLoopError,
    Unauthenticated,
)
from rewardloop.feedback.sources.content_check import ContentGate, load_check

from .bad_input import token_bytes
from .records import Item, Outcome, SubmitResult
from .store import FeedbackStore

MAX_ID_LEN = 256
MAX_METADATA = 64
MAX_ITEMS_PER_PUBLISH = 4096
MAX_LIMIT = 1000
RATER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


def resolve_token(token: str) -> str:
    """`feedback.token` resolved: `env:NAME` reads the environment (see `rewardloop.auth`)."""
    return auth.resolve_token(token, "feedback.token")


def stars_to_value(stars: int) -> float:
    """1..5 stars -> a reward in [0, 1] (1 star = 0, 5 stars = 1)."""
    if not 1 <= stars <= 5:
        raise InvalidInput("stars", f"must be 1..5, got {stars}")
    return (stars - 1) / 4.0


def check_rater(rater: str) -> str:
    """Raters are pseudonyms: short ids of letters, digits and _.:- (never an e-mail or a name)."""
    if not isinstance(rater, str) or not RATER_RE.match(rater):
        raise InvalidInput(
            "rater",
            "must be a pseudonymous id of 1..64 letters, digits or _.:- (no e-mail addresses or names)",
        )
    return rater


def _finite(value: object) -> bool:
    """A real number (not bool) that fits a float: huge ints and NaN/inf are not."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int past float range
        return False


def _check_limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_LIMIT:
        raise InvalidInput("limit", f"must be an integer 0..{MAX_LIMIT}")
    return limit


def _check_id(value: object, name: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID_LEN:
        raise InvalidInput(name, f"must be a string of 1..{MAX_ID_LEN} characters")
    return value


class FeedbackCore:
    """Everything the gateway does, behind both transports."""

    def __init__(
        self, cfg, store: FeedbackStore | None = None, clock: Callable[[], float] = time.time
    ):
        self.cfg = cfg
        self.store = store or FeedbackStore.from_config(cfg, clock=clock)
        self.token = resolve_token(cfg.token)
        self.gate = ContentGate(load_check(cfg.content_check))
        self.max_request_bytes = cfg.max_request_bytes
        self.errors: Counter[str] = Counter()
        self.on_rated: Callable[[float], None] | None = None  # gets each new rating's latency
        self._lock = threading.Lock()

    # ---- guards -----------------------------------------------------------------------------

    def authorize(self, token: str | None) -> None:
        """Raise Unauthenticated unless `token` is the configured bearer token (if any)."""
        expected = token_bytes(self.token)
        if self.token and not (token and hmac.compare_digest(token_bytes(token), expected)):
            raise Unauthenticated(
                "a bearer token is required: send `Authorization: Bearer <feedback.token>`"
            )

    def check_size(self, n_bytes: int | None) -> None:
        if n_bytes is not None and n_bytes > self.max_request_bytes:
            raise PayloadTooLarge(
                "body",
                f"{n_bytes} bytes is over feedback.max_request_bytes={self.max_request_bytes}",
            )

    def count(self, exc: BaseException) -> None:
        """Count a failed request by the kind of error."""
        kinds = (
            (Unauthenticated, "unauthenticated"),
            (PayloadTooLarge, "too_large"),
            (NotFound, "not_found"),
            (InvalidInput, "invalid"),
            (RewardLoopError, "error"),
        )
        name = next((n for cls, n in kinds if isinstance(exc, cls)), "internal")
        with self._lock:
            self.errors[name] += 1

    # ---- calls ------------------------------------------------------------------------------

    def publish(self, items: list[dict], publisher: str) -> dict:
        """Validate, run the content check, store. Returns published / blocked / blocked_ids."""
        publisher = _check_id("anonymous" if publisher in ("", None) else publisher, "publisher")
        if not isinstance(items, list) or len(items) > MAX_ITEMS_PER_PUBLISH:
            raise InvalidInput("items", f"must be a list of at most {MAX_ITEMS_PER_PUBLISH} items")
        parsed = [self._parse_item(d, i) for i, d in enumerate(items)]
        blocked = self.gate.reasons(
            [(it.id, it.prompt, it.completion, it.metadata) for it in parsed]
        )
        self.store.publish(parsed, publisher, blocked)
        ids = [it.id for it in parsed if it.id in blocked]
        return {"published": len(parsed) - len(ids), "blocked": len(ids), "blocked_ids": ids}

    def _parse_item(self, d: object, i: int) -> Item:
        if not isinstance(d, dict):
            raise InvalidInput(f"items[{i}]", "must be an object with id, prompt, completion")
        item_id = _check_id(d.get("id"), f"items[{i}].id")
        texts = []
        for name in ("prompt", "completion"):
            value = d.get(name, "")
            if not isinstance(value, str):
                raise InvalidInput(f"items[{i}].{name}", "must be a string")
            texts.append(value)
        metadata = d.get("metadata") or {}
        if not isinstance(metadata, dict) or len(metadata) > MAX_METADATA:
            raise InvalidInput(
                f"items[{i}].metadata", f"must be a mapping of at most {MAX_METADATA} entries"
            )
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise InvalidInput(f"items[{i}].metadata", "keys and values must be strings")
        expires_at = d.get("expires_at") or 0.0
        if not _finite(expires_at):
            raise InvalidInput(f"items[{i}].expires_at", "must be unix seconds")
        return Item(item_id, texts[0], texts[1], dict(metadata), 0.0, float(expires_at))

    def pending(self, limit: int = 20, rater: str = "") -> list[Item]:
        if rater:
            check_rater(rater)
        return self.store.pending(_check_limit(limit) or 20)

    def submit(
        self, item_id: str, value: float | None, rater: str, key: str = "", stars: int = 0
    ) -> SubmitResult:
        """One rating: like = 1, dislike = 0, any value in [0, 1], or stars 1..5."""
        item_id = _check_id(item_id, "item_id")
        check_rater(rater)
        if key:
            _check_id(key, "idempotency_key")
        if stars:
            if isinstance(stars, bool) or not isinstance(stars, int):
                raise InvalidInput("stars", "must be an integer 1..5")
            value = stars_to_value(stars)
        if not _finite(value):
            raise InvalidInput(
                "value", "must be a number in [0, 1] (like = 1, dislike = 0), or send stars"
            )
        if not 0.0 <= value <= 1.0:
            raise InvalidInput(
                "value", f"must be in [0, 1], got {value}; use stars for a 1..5 scale"
            )
        res = self.store.submit(item_id, float(value), rater, key, stars)
        if res.stored and not res.duplicate and self.on_rated is not None:
            self.on_rated(res.latency_s)
        return res

    def collect(self, publisher: str, ack_ids: list[str], limit: int = 0) -> list[Outcome]:
        publisher = _check_id(publisher, "publisher")
        if not isinstance(ack_ids, list) or not all(isinstance(a, str) for a in ack_ids):
            raise InvalidInput("ack_ids", "must be a list of item ids")
        return self.store.collect(publisher, ack_ids, _check_limit(limit) or 256)

    def maintain(self) -> None:
        """Periodic housekeeping: apply expiry, purge past the retention period."""
        self.store.expire()
        self.store.purge()

    def stats(self) -> dict:
        with self._lock:
            errors = dict(self.errors)
        return {
            **self.store.counters(),
            "blocked_by_check": self.gate.blocked,
            "check_errors": self.gate.errors,
            "request_errors": errors,
        }

    def close(self) -> None:
        self.store.close()
