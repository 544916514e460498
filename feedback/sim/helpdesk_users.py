"""Simulated help-desk users: "was this helpful?", answered in-process or through the gateway.

- `HelpdeskUser` is one user's judgement, noise-free: the probability that an answer to their
  question is helpful (`rewardloop.tasks.helpdesk.corpus.helpful_probability`: the right steps ->
  `helpful_prob`, one right step -> halfway, generic or another topic's steps ->
  `unhelpful_prob`, garbage -> 0). The question's category is read from the prompt's words.
- `HelpdeskUserReward` is a `RewardSource` over it: `score()` draws an immediate Bernoulli
  answer (an in-process baseline, `reward.kind: persona` with `task: helpdesk`), `expected()`
  gives the probabilities that evaluation uses.
- `SimulatedRaters` are the delayed version, the way people would do it: a scheduler thread
  lists pending items over the gateway's HTTP API, and after a random delay (uniform in
  [0.5, 1.5] x `mean_delay_s`) one of `n_raters` rater threads submits 1 (helpful) or 0,
  a Bernoulli draw of the user's probability, under its pseudonym, with an idempotency key
  and the bearer token. Every call has a deadline; errors are counted, never fatal.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass

from rewardloop.config import RewardConfig
from rewardloop.errors import InvalidInput, RewardLoopError, Unavailable
from rewardloop.feedback.gateway.client import GatewayClient, HttpGatewayClient
from rewardloop.feedback.sources.base import RewardSource, Score, ScoreRequest
from rewardloop.tasks.helpdesk.corpus import helpful_probability, question_category
from rewardloop.tasks.helpdesk.prompts import question_of
from rewardloop.trajectory import RewardPart

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HelpdeskUser:
    """A customer judging an answer to their question."""

    helpful_prob: float = 0.9
    unhelpful_prob: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 <= self.unhelpful_prob <= self.helpful_prob <= 1.0:
            raise InvalidInput("like_prob", "need 0 <= unhelpful_prob <= helpful_prob <= 1")

    def probability(self, prompt: str, answer: str, category: str = "") -> float:
        """P(helpful) of `answer` to `prompt`; the category comes from the question's words
        unless given. A question about nothing the help desk knows finds nothing helpful."""
        category = category or question_category(question_of(prompt)) or ""
        if not category:
            return 0.0
        return helpful_probability(category, answer, self.helpful_prob, self.unhelpful_prob)


class HelpdeskUserReward(RewardSource):
    """Immediate Bernoulli "helpful" answers from simulated users; `expected()` is noise-free."""

    kind = "persona"

    def __init__(self, cfg: RewardConfig | None = None, seed: int = 0):
        cfg = cfg or RewardConfig()
        self.user = HelpdeskUser(cfg.like_prob, cfg.dislike_prob)
        self._rng = random.Random(seed)

    def expected(self, items: list[ScoreRequest]) -> list[float]:
        return [self.user.probability(i.prompt, i.completion, i.prompt_key) for i in items]

    def score(self, items: list[ScoreRequest]) -> list[Score | None]:
        out: list[Score | None] = []
        for item, p in zip(items, self.expected(items), strict=True):
            value = 1.0 if self._rng.random() < p else 0.0
            out.append(Score(value, [RewardPart("helpful", value)], self.kind, item.prompt_key))
        return out


class SimulatedRaters:
    """`n_raters` simulated users rating the gateway's pending items after a delay of seconds."""

    def __init__(
        self,
        client: GatewayClient,
        user: HelpdeskUser | None = None,
        *,
        n_raters: int = 4,
        mean_delay_s: float = 2.0,
        seed: int = 0,
        poll_interval_s: float = 0.2,
        page: int = 500,
    ):
        if n_raters < 1:
            raise InvalidInput("feedback.simulated_raters", f"must be >= 1, got {n_raters}")
        if mean_delay_s < 0:
            raise InvalidInput("feedback.rating_delay_s", f"must be >= 0, got {mean_delay_s}")
        self.client = client
        self.user = user or HelpdeskUser()
        self.raters = [f"sim-{seed}-{k}" for k in range(n_raters)]
        self.mean_delay_s = mean_delay_s
        self.poll_interval_s = poll_interval_s
        self.page = page
        self._rng = random.Random(seed)
        self._heap: list[tuple[float, int, str, float, float, int]] = []
        self._seq = itertools.count()
        self._seen: set[str] = set()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.counts: Counter[str] = Counter()
        self._delay_sum = self._delay_max = 0.0
        self._first_at = self._last_at = 0.0

    @classmethod
    def over_http(
        cls,
        http_url: str,
        token: str = "",
        *,
        timeout_s: float = 5.0,
        ca_cert: str = "",
        user: HelpdeskUser | None = None,
        **kwargs,
    ) -> SimulatedRaters:
        """Raters that talk to the gateway's HTTP/JSON API at `http_url` (bearer `token`)."""
        n = int(kwargs.get("n_raters", 4))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = HttpGatewayClient(
            http_url,
            headers=headers,
            timeout_s=timeout_s,
            retries=2,
            max_concurrency=n + 1,
            ca_cert=ca_cert,
        )
        return cls(client, user, **kwargs)

    # ---- lifecycle ----------------------------------------------------------------------------

    def start(self) -> SimulatedRaters:
        self._threads = [
            threading.Thread(target=self._schedule_loop, name="raters-poll", daemon=True)
        ]
        self._threads += [
            threading.Thread(target=self._rate_loop, args=(r,), name=f"rater-{r}", daemon=True)
            for r in self.raters
        ]
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> dict:
        """Stop every thread (each call in flight has its own deadline); returns `stats()`."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self.client.close()
        return self.stats()

    def stats(self) -> dict:
        """Ratings submitted, errors, the delay from publish to rating, ratings per second."""
        with self._cond:
            counts, delay_sum, delay_max = dict(self.counts), self._delay_sum, self._delay_max
            span = self._last_at - self._first_at
            queued = len(self._heap)
        return {
            **{k: counts.get(k, 0) for k in ("seen", "stored", "late", "duplicate", "helpful")},
            "errors": {k[6:]: v for k, v in counts.items() if k.startswith("error:")},
            "queued": queued,
            "raters": len(self.raters),
            "mean_delay_s": round(delay_sum / counts["stored"], 3)
            if counts.get("stored")
            else None,
            "max_delay_s": round(delay_max, 3) if counts.get("stored") else None,
            "ratings_per_s": round(counts.get("stored", 0) / span, 2) if span > 0 else None,
        }

    # ---- the two loops ------------------------------------------------------------------------

    def _schedule_loop(self) -> None:
        """List pending items; give each new one a verdict and a time to be rated."""
        while not self._stop.is_set():
            try:
                items = self.client.pending(limit=self.page)
            except RewardLoopError as exc:
                self._count_error(exc)
                items = None
            if items is not None:
                now = time.monotonic()
                with self._cond:
                    queued = {entry[2] for entry in self._heap}
                    for it in items:
                        if it.id in self._seen:
                            continue
                        p = self.user.probability(it.prompt, it.completion)
                        value = 1.0 if self._rng.random() < p else 0.0
                        due = now + self.mean_delay_s * self._rng.uniform(0.5, 1.5)
                        heapq.heappush(
                            self._heap, (due, next(self._seq), it.id, value, it.created_at, 0)
                        )
                        queued.add(it.id)
                        self.counts["seen"] += 1
                    # forget what is neither pending nor queued (rated), so memory stays bounded
                    self._seen = {it.id for it in items} | queued
                    self._cond.notify_all()
            self._stop.wait(self.poll_interval_s)

    def _rate_loop(self, rater: str) -> None:
        while not self._stop.is_set():
            with self._cond:
                entry = None
                while not self._stop.is_set():
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        entry = heapq.heappop(self._heap)
                        break
                    wait = self._heap[0][0] - now if self._heap else 1.0
                    self._cond.wait(min(1.0, wait))
            if entry is not None:
                self._submit(rater, entry)

    def _submit(self, rater: str, entry: tuple) -> None:
        due, seq, item_id, value, created_at, attempt = entry
        try:
            res = self.client.submit(item_id, value, rater, key=f"{rater}:{item_id}")
        except Unavailable as exc:
            self._count_error(exc)
            if attempt < 3 and not self._stop.is_set():  # the gateway may be back in a moment
                with self._cond:
                    retry = (time.monotonic() + 0.5, seq, item_id, value, created_at, attempt + 1)
                    heapq.heappush(self._heap, retry)
                    self._cond.notify()
            return
        except RewardLoopError as exc:  # unknown (purged) item, refused rater: count and go on
            self._count_error(exc)
            return
        now = time.time()
        with self._cond:
            if res.duplicate:
                self.counts["duplicate"] += 1
            elif not res.stored:
                self.counts["late"] += 1
            else:
                self.counts["stored"] += 1
                self.counts["helpful"] += int(value)
                delay = max(0.0, now - created_at)
                self._delay_sum += delay
                self._delay_max = max(self._delay_max, delay)
                self._first_at = self._first_at or now
                self._last_at = now

    def _count_error(self, exc: BaseException) -> None:
        log.debug("simulated raters: %s", exc)
        with self._cond:
            self.counts[f"error:{type(exc).__name__}"] += 1
