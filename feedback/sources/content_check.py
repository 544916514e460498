"""The content check: a hook that sees every generation before a rater or a user does.

A check is any callable `check(prompt, completion, metadata) -> str | None` that returns a
reason to block, or None (or "") to let the item through. Configure one with
`feedback.content_check: package.module:callable`. A blocked item never reaches a rater (the
gateway keeps no copy of its text), never reaches a remote reward service, is counted, and
its trajectory gets `feedback.blocked_reward` so the policy learns to stop producing it.
A check that raises blocks the item (fail closed): oversight must not fail open.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable

from rewardloop.errors import ConfigError
from rewardloop.scoring import Score, ScoreRequest
from rewardloop.trajectory import RewardPart

from .base import RewardSource

Check = Callable[[str, str, dict], "str | None"]

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_PHONE = re.compile(r"\+?\d[\d ().-]{7,}\d")
_URL = re.compile(r"https?://|www\.", re.IGNORECASE)


def block_contact_details(prompt: str, completion: str, metadata: dict) -> str | None:
    """Built-in example check: blocks completions that contain an e-mail, phone number or URL."""
    for name, pattern in (
        ("an e-mail address", _EMAIL),
        ("a phone number", _PHONE),
        ("a URL", _URL),
    ):
        if pattern.search(completion):
            return f"completion contains {name}"
    return None


def load_check(spec: str) -> Check | None:
    """Import `module:callable` (None for an empty spec); ConfigError if it cannot be found."""
    if not spec:
        return None
    module_name, _, attr = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"feedback.content_check: cannot import {spec!r}: {exc}") from None
    if not callable(fn):
        raise ConfigError(f"feedback.content_check: {spec!r} is not callable")
    return fn


class ContentGate:
    """Runs a check over items and counts what it blocks."""

    def __init__(self, check: Check | None):
        self.check = check
        self.blocked = 0
        self.errors = 0

    def reasons(self, items: list[tuple[str, str, str, dict]]) -> dict[str, str]:
        """{id: reason} for the blocked ones among (id, prompt, completion, metadata)."""
        if self.check is None:
            return {}
        out = {}
        for item_id, prompt, completion, metadata in items:
            try:
                reason = self.check(prompt, completion, dict(metadata))
            except Exception as exc:  # noqa: BLE001 - a broken check blocks (fail closed)
                self.errors += 1
                reason = f"content check failed: {type(exc).__name__}: {exc}"
            if reason:
                out[item_id] = str(reason)
        self.blocked += len(out)
        return out


class ContentCheckedSource(RewardSource):
    """Wraps a reward source that shows items to someone outside (a service, its users).

    Blocked items never reach the inner source and score `blocked_reward` at once.
    """

    def __init__(self, inner: RewardSource, check: Check, blocked_reward: float):
        self.inner = inner
        self.kind = inner.kind
        self.gate = ContentGate(check)
        self.blocked_reward = blocked_reward

    def score(self, items: list[ScoreRequest]) -> list[Score | None]:
        blocked = self.gate.reasons([(i.id, i.prompt, i.completion, i.metadata) for i in items])
        passed = [i for i in items if i.id not in blocked]
        inner = iter(self.inner.score(passed) if passed else [])
        out: list[Score | None] = []
        for item in items:
            if item.id in blocked:
                part = RewardPart("blocked", self.blocked_reward)
                out.append(Score(self.blocked_reward, [part], source="blocked"))
            else:
                out.append(next(inner))
        return out

    def poll(self, timeout_s: float = 0.0) -> list[tuple[str, Score]]:
        return self.inner.poll(timeout_s)

    def expected(self, items: list[ScoreRequest]) -> list[float] | None:
        return self.inner.expected(items)

    def close(self) -> None:
        self.inner.close()
