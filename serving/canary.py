"""Safe rollout: which version a user is served, and when a canary is promoted or rolled back.

    propose(v)           a new learner version becomes the canary (if none is being judged)
    route(user_key)      pinned version, else the canary for a sticky share of users, else stable
    observe(v, r, t)     a joined, *rated* reward of a response served by v at time t
    decide(now)          once both arms have `window` rewards served since the canary started:

        d  = mean_canary - mean_stable + margin
        z  = d / sqrt(var_canary / n_canary + var_stable / n_stable)      (Welch's statistic)
        p  = Phi(z)                     one-sided: small p = the canary is worse beyond margin
        p < alpha  -> rollback          otherwise -> promote (the canary becomes stable)

    The stable arm is, with reference "concurrent" (default), the stable's rewards served since
    the canary started (same traffic, same hours: robust to a product whose users change over
    the day); with "lifetime", every rated reward of the stable version from its own canary
    phase on (several windows' worth: a steadier bar, so a canary that is merely lucky against
    a short unlucky stable window is caught; right when traffic is stationary over minutes).

    With n >= 20 per arm the normal approximation to Welch's t is used (Phi = normal CDF); for
    0/1 rewards this is the unpooled two-proportion z-test. A canary not judged within
    `timeout_s` is rolled back (reason `timeout`). Stickiness: a user's share is a hash of their
    pseudonym and the canary's version, so a user sees one version for the canary's whole life.

Pinning (`pin(v)`) serves every user `v` and stops proposals until `unpin()`; `rollback(v)`
makes `v` stable now and ends any canary. Plain Python, thread-safe; decisions are returned
to the caller (the serve loop logs, counts and persists them).
"""

from __future__ import annotations

import hashlib
import math
import threading
from dataclasses import dataclass, field

from rewardloop.errors import InvalidInput

CANARY_REFERENCES = ("concurrent", "lifetime")


@dataclass
class Arm:
    n: int = 0
    total: float = 0.0
    total_sq: float = 0.0

    def add(self, r: float) -> None:
        self.n += 1
        self.total += r
        self.total_sq += r * r

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else float("nan")

    @property
    def var(self) -> float:
        if self.n < 2:
            return 0.0
        return max(0.0, (self.total_sq - self.total**2 / self.n) / (self.n - 1))


@dataclass
class VersionStats:
    served: int = 0
    rated: int = 0
    reward_sum: float = 0.0
    status: str = "trained"  # trained | canary | stable | promoted | rolled_back | retired

    def to_json(self, version: int) -> dict:
        mean = self.reward_sum / self.rated if self.rated else None
        return {
            "version": version,
            "status": self.status,
            "served": self.served,
            "rated": self.rated,
            "live_reward": mean,
        }


@dataclass
class Decision:
    canary: int
    stable: int
    action: str  # promote | rollback
    reason: str
    n_canary: int
    n_stable: int
    mean_canary: float
    mean_stable: float
    z: float
    p: float
    at: float
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "extra"} | self.extra


def normal_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def welch_noninferior(canary: Arm, stable: Arm, margin: float) -> tuple[float, float]:
    """(z, p): one-sided p that the canary is no worse than stable by `margin` (small = worse)."""
    d = canary.mean - stable.mean + margin
    se = math.sqrt(canary.var / canary.n + stable.var / stable.n)
    if se == 0:
        z = math.inf if d >= 0 else -math.inf
    else:
        z = d / se
    return z, normal_cdf(z)


class CanaryRouter:
    def __init__(
        self,
        stable: int,
        fraction: float = 0.2,
        window: int = 40,
        alpha: float = 0.05,
        margin: float = 0.0,
        timeout_s: float = 600.0,
        reference: str = "concurrent",
    ):
        if reference not in CANARY_REFERENCES:
            raise InvalidInput(
                "reference", f"must be one of {CANARY_REFERENCES}, got {reference!r}"
            )
        self.reference = reference
        self.fraction, self.window, self.alpha = fraction, window, alpha
        self.margin, self.timeout_s = margin, timeout_s
        self.stable = stable
        self.canary: int | None = None
        self.pinned: int | None = None
        self.started_at = 0.0
        self.arms = {"canary": Arm(), "stable": Arm()}
        self.lifetime: dict[int, Arm] = {}  # every rated reward per version
        self.versions: dict[int, VersionStats] = {stable: VersionStats(status="stable")}
        self.decisions: list[Decision] = []
        self.counts = {"promoted": 0, "rolled_back": 0, "proposed": 0, "manual_rollbacks": 0}
        self._lock = threading.Lock()

    def _stats(self, version: int) -> VersionStats:
        return self.versions.setdefault(version, VersionStats())

    def propose(self, version: int, now: float) -> Decision | None:
        """Make `version` the canary if none is being judged; with fraction 0, promote it."""
        with self._lock:
            if self.canary is not None or self.pinned is not None or version <= self.stable:
                return None
            self.counts["proposed"] += 1
            if self.fraction == 0:
                return self._finish(version, "promote", "canary_fraction=0", 0.0, 1.0, now)
            self.canary, self.started_at = version, now
            self.arms = {"canary": Arm(), "stable": Arm()}
            self._stats(version).status = "canary"
            return None

    def route(self, user_key: str) -> int:
        with self._lock:
            if self.pinned is not None:
                version = self.pinned
            elif self.canary is not None and self._bucket(user_key) < self.fraction:
                version = self.canary
            else:
                version = self.stable
            self._stats(version).served += 1
            return version

    def _bucket(self, user_key: str) -> float:
        digest = hashlib.sha256(f"{user_key}\x1f{self.canary}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def observe(self, version: int, reward: float, served_at: float) -> None:
        """A rated reward; it counts for the judgement if served since the canary started."""
        with self._lock:
            stats = self._stats(version)
            stats.rated += 1
            stats.reward_sum += reward
            self.lifetime.setdefault(version, Arm()).add(reward)
            if self.canary is None or served_at < self.started_at:
                return
            if version == self.canary:
                self.arms["canary"].add(reward)
            elif version == self.stable:
                self.arms["stable"].add(reward)

    def decide(self, now: float) -> Decision | None:
        """Judge the canary if its window is full (or its time is up); else None."""
        with self._lock:
            if self.canary is None:
                return None
            c, s = self.arms["canary"], self._stable_arm()
            if c.n >= self.window and s.n >= self.window:
                z, p = welch_noninferior(c, s, self.margin)
                if p < self.alpha:
                    why = f"worse: p={p:.4f} < alpha={self.alpha}"
                    return self._finish(self.canary, "rollback", why, z, p, now)
                why = f"not worse: p={p:.4f} >= alpha={self.alpha}"
                return self._finish(self.canary, "promote", why, z, p, now)
            if now - self.started_at > self.timeout_s:
                why = f"timeout: {c.n}/{s.n} of {self.window} rated in {self.timeout_s:.0f} s"
                return self._finish(self.canary, "rollback", why, math.nan, math.nan, now)
            return None

    def _stable_arm(self) -> Arm:
        if self.reference == "lifetime":
            return self.lifetime.setdefault(self.stable, Arm())
        return self.arms["stable"]

    def _finish(self, canary, action, reason, z, p, now) -> Decision:
        c, s = self.arms["canary"], self._stable_arm()
        decision = Decision(canary, self.stable, action, reason, c.n, s.n, c.mean, s.mean, z, p,
                            now, {"reference": self.reference})  # fmt: skip
        if action == "promote":
            self._stats(self.stable).status = "retired"
            self.stable = canary
            self._stats(canary).status = "stable"
            self.counts["promoted"] += 1
        else:
            self._stats(canary).status = "rolled_back"
            self.counts["rolled_back"] += 1
        self.canary = None
        self.decisions.append(decision)
        return decision

    def rollback(self, version: int, now: float) -> Decision:
        """Operator's rollback: `version` is stable now; a canary being judged is dropped."""
        with self._lock:
            if self.canary is not None:
                self._stats(self.canary).status = "rolled_back"
            old = self.stable
            if old != version:
                self._stats(old).status = "rolled_back"
            self.canary, self.stable = None, version
            self._stats(version).status = "stable"
            self.counts["manual_rollbacks"] += 1
            c, s = self.arms["canary"], self.arms["stable"]
            d = Decision(version, old, "manual_rollback", "operator", c.n, s.n, c.mean, s.mean,
                         math.nan, math.nan, now)  # fmt: skip
            self.decisions.append(d)
            return d

    def pin(self, version: int | None) -> None:
        with self._lock:
            self.pinned = version
            if version is not None:
                self._stats(version)

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "stable": self.stable,
                "canary": self.canary,
                "pinned": self.pinned,
                "counts": dict(self.counts),
                "versions": [v.to_json(k) for k, v in sorted(self.versions.items())],
                "decisions": [d.to_json() for d in self.decisions],
            }
