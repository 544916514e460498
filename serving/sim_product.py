"""A simulated product in front of `rewardloop serve`: users who ask through the `openai`
client and rate what they get after a while, or never.

Each user is one of the news-feed readers (feedback/sim/personas: alice likes sports and
entertainment, ...), named `<reader>-<i>`. A request is a feed prompt for that reader
(`metadata.context` = the reader, the learner's baseline key); the answer is liked with the
reader's like probability (one Bernoulli draw). With probability `serve.sim_never_rate` the
user never rates; otherwise the rating is sent to `/v1/feedback` after an exponential delay
with mean `serve.sim_delay_s` (capped at 10x). `liked` records (seconds since start when served, version, liked,
expected like probability) for every rating sent: the live like rate the summary plots.
"""

from __future__ import annotations

import heapq
import json
import logging
import random
import threading
import time
import urllib.request

from rewardloop.config import RewardConfig
from rewardloop.feedback.sim.personas import ReaderPersona
from rewardloop.tasks.newsfeed.prompts import train_prompts
from rewardloop.tasks.newsfeed.readers import READERS

log = logging.getLogger(__name__)


class SimProduct:
    def __init__(self, url: str, cfg, api_key: str = "", seed: int = 0):
        import openai

        self.url, self.cfg, self.s = url, cfg, cfg.serve
        self.api_key = api_key or "none"
        self.client = openai.OpenAI(base_url=f"{url}/v1", api_key=self.api_key,
                                    timeout=self.s.request_timeout_s + 10, max_retries=0)  # fmt: skip
        rc = RewardConfig()
        self.personas = {r.name: ReaderPersona(r, rc.like_prob, rc.dislike_prob) for r in READERS}
        self.prompts: dict[str, list[str]] = {}
        for p in train_prompts():
            self.prompts.setdefault(p.reader, []).append(p.text)
        names = [r.name for r in READERS]
        self.users = [f"{names[i % len(names)]}-{i}" for i in range(self.s.sim_users)]
        self.rng = random.Random(seed)
        self.liked: list[tuple[float, int, float, float]] = []
        self.counts = {"requests": 0, "errors": 0, "rated": 0, "never": 0, "rejected_429": 0}
        self._due: list[tuple] = []
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.t0 = time.time()

    def start(self) -> SimProduct:
        for i in range(self.s.sim_concurrency):
            self._threads.append(threading.Thread(target=self._user_loop, args=(i,), daemon=True))
        self._threads.append(threading.Thread(target=self._rater_loop, daemon=True))
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        for t in self._threads:
            t.join(timeout_s)

    # ---- users asking -----------------------------------------------------------------------

    def _user_loop(self, i: int) -> None:
        import openai

        rng = random.Random(self.rng.random() + i)
        period = self.s.sim_concurrency / self.s.sim_rate if self.s.sim_rate else 0.0
        next_at = time.monotonic()
        while not self._stop.is_set():
            next_at += period  # each thread paces itself: together at most serve.sim_rate / s
            if self._stop.wait(max(0.0, next_at - time.monotonic())):
                return
            next_at = max(next_at, time.monotonic() - period)
            user = rng.choice(self.users)
            reader = user.split("-")[0]
            try:
                r = self.client.completions.create(
                    model=self.s.model_name,
                    prompt=rng.choice(self.prompts[reader]),
                    max_tokens=self.s.max_tokens,
                    user=user,
                    extra_body={"metadata": {"context": reader}},
                )
            except openai.RateLimitError:
                with self._lock:
                    self.counts["rejected_429"] += 1
                self._stop.wait(self.s.retry_after_s)
                continue
            except Exception as exc:  # noqa: BLE001 - a product keeps going; counted
                with self._lock:
                    self.counts["errors"] += 1
                log.warning("sim product: request failed: %s", exc)
                self._stop.wait(1.0)
                continue
            version = int(r.system_fingerprint.removeprefix("v"))
            prob = self.personas[reader].like_probability(r.choices[0].text)
            with self._wake:
                self.counts["requests"] += 1
                if rng.random() < self.s.sim_never_rate:
                    self.counts["never"] += 1
                    continue
                delay = min(
                    rng.expovariate(1 / max(self.s.sim_delay_s, 1e-6)), 10 * self.s.sim_delay_s
                )
                liked = 1.0 if rng.random() < prob else 0.0
                served = time.time() - self.t0
                heapq.heappush(
                    self._due, (time.time() + delay, r.id, user, liked, version, prob, served)
                )
                self._wake.notify()

    # ---- users rating -----------------------------------------------------------------------

    def _rater_loop(self) -> None:
        while True:
            with self._wake:
                while not self._stop.is_set() and (not self._due or self._due[0][0] > time.time()):
                    wait = self._due[0][0] - time.time() if self._due else 1.0
                    self._wake.wait(max(0.01, min(wait, 1.0)))
                if self._stop.is_set():
                    return
                _, rid, user, liked, version, prob, served = heapq.heappop(self._due)
            try:
                self._rate(rid, user, liked)
            except Exception as exc:  # noqa: BLE001 - counted; the product keeps rating
                with self._lock:
                    self.counts["errors"] += 1
                log.warning("sim product: rating failed: %s", exc)
                continue
            with self._lock:
                self.counts["rated"] += 1
                self.liked.append((served, version, liked, prob))

    def _rate(self, response_id: str, user: str, liked: float) -> None:
        body = {"response_id": response_id, "value": "like" if liked else "dislike",
                "user": user, "key": f"sim:{response_id}"}  # fmt: skip
        req = urllib.request.Request(
            f"{self.url}/v1/feedback",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()

    def by_version(self) -> list[dict]:
        """The like rate of the ratings sent for each serving version, oldest first."""
        with self._lock:
            rows: dict[int, list[float]] = {}
            for _, version, liked, _ in self.liked:
                rows.setdefault(version, []).append(liked)
        return [{"version": v, "like_rate": sum(xs) / len(xs), "ratings": len(xs)}
                for v, xs in sorted(rows.items())]  # fmt: skip

    def like_rate(self, start_s: float, end_s: float) -> tuple[float | None, int]:
        """(like rate, ratings) of the ratings sent between start_s and end_s after start."""
        with self._lock:
            xs = [liked for t, _, liked, _ in self.liked if start_s <= t < end_s]
        return (sum(xs) / len(xs) if xs else None), len(xs)
