"""Several reward sources at once, with weights: `reward.sources`.

    reward:
      sources:
        - {kind: http, name: quality, weight: 0.7, url: "http://rm:8000/score"}
        - {kind: human, name: people, weight: 0.3, url: "http://gateway:8470"}

Every item is scored by every source; its reward is the weighted sum and each source's value
is kept as a `RewardPart(name, value, weight)` on the trajectory. If one of the sources is
delayed (people), the item waits for it: the immediate parts are held here and the item comes
back from `poll()` once the last part arrives. If a delayed part is dropped (expired with the
drop outcome), the whole item is dropped.
"""

from __future__ import annotations

import math
import time

from rewardloop.scoring import EXPIRED, Score, ScoreRequest
from rewardloop.trajectory import RewardPart

from .base import RewardSource


class CombinedReward(RewardSource):
    """A weighted sum of named reward sources."""

    kind = "combined"

    def __init__(self, parts: list[tuple[str, float, RewardSource]]):
        if not parts:
            raise ValueError("CombinedReward needs at least one source")
        self.parts = parts
        self.weights = {name: w for name, w, _ in parts}
        self.order = [name for name, _, _ in parts]
        self.partial: dict[str, dict[str, Score]] = {}
        """item id -> parts received so far, while a delayed part is outstanding."""

    def _combine(self, got: dict[str, Score]) -> Score:
        scores = [got[n] for n in self.order]
        if any(s.source == EXPIRED for s in scores):
            return Score(math.nan, [], source=EXPIRED, latency_s=max(s.latency_s for s in scores))
        parts = [RewardPart(n, got[n].reward, self.weights[n]) for n in self.order]
        rater = next((s.rater for s in scores if s.rater), "")
        return Score(
            sum(p.value * p.weight for p in parts),
            parts,
            source="+".join(s.source or n for n, s in zip(self.order, scores, strict=True)),
            rater=rater,
            latency_s=max(s.latency_s for s in scores),
        )

    def score(self, items: list[ScoreRequest]) -> list[Score | None]:
        answers = {name: src.score(items) for name, _, src in self.parts}
        out: list[Score | None] = []
        for i, item in enumerate(items):
            got = {name: answers[name][i] for name in self.order}
            if all(s is not None for s in got.values()):
                out.append(self._combine(got))
            else:
                self.partial[item.id] = {n: s for n, s in got.items() if s is not None}
                out.append(None)
        return out

    def poll(self, timeout_s: float = 0.0) -> list[tuple[str, Score]]:
        done = []
        deadline = time.monotonic() + timeout_s
        for name, _, src in self.parts:
            for item_id, s in src.poll(max(0.0, deadline - time.monotonic())):
                got = self.partial.get(item_id)
                if got is None:
                    continue
                got[name] = s
                if len(got) == len(self.order):
                    done.append((item_id, self._combine(self.partial.pop(item_id))))
        return done

    def expected(self, items: list[ScoreRequest]) -> list[float] | None:
        per = [src.expected(items) for _, _, src in self.parts]
        if any(p is None for p in per):
            return None
        return [
            sum(self.weights[n] * p[i] for n, p in zip(self.order, per, strict=True))
            for i in range(len(items))
        ]

    def close(self) -> None:
        for _, _, src in self.parts:
            src.close()
