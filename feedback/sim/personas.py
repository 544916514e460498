"""Simulated readers as a reward source: each completion is shown to the reader the prompt names.

A `ReaderPersona` knows one reader's taste (from `rewardloop.tasks.newsfeed.readers`): a well-formed
headline on a topic they like is liked with probability `like_prob`, any other well-formed
headline with `dislike_prob`, anything malformed never. `PersonaReward` turns that into clicks:
each score is one Bernoulli draw (1.0 = liked), seeded so a run is reproducible, and
`expected()` gives the noise-free probability that evaluation uses.
"""

from __future__ import annotations

import random

from rewardloop.config import RewardConfig
from rewardloop.errors import InvalidInput
from rewardloop.feedback.sources.base import RewardSource, Score, ScoreRequest
from rewardloop.tasks.newsfeed.readers import READERS, Reader, like_probability
from rewardloop.trajectory import RewardPart


class ReaderPersona:
    """One simulated reader's taste."""

    def __init__(self, reader: Reader, like_prob: float = 0.9, dislike_prob: float = 0.1):
        if not 0.0 <= dislike_prob <= like_prob <= 1.0:
            raise InvalidInput("like_prob", "need 0 <= dislike_prob <= like_prob <= 1")
        self.reader = reader
        self.like_prob = like_prob
        self.dislike_prob = dislike_prob

    @property
    def name(self) -> str:
        return self.reader.name

    def like_probability(self, completion: str) -> float:
        """0.0 if malformed, like_prob on a liked topic, else dislike_prob."""
        return like_probability(self.reader, completion, self.like_prob, self.dislike_prob)


class PersonaReward(RewardSource):
    """Bernoulli likes from the reader named by each request's `prompt_key`."""

    kind = "persona"

    def __init__(
        self, cfg: RewardConfig | None = None, seed: int = 0, readers: tuple[Reader, ...] = READERS
    ):
        cfg = cfg or RewardConfig()
        self.personas = {r.name: ReaderPersona(r, cfg.like_prob, cfg.dislike_prob) for r in readers}
        self._rng = random.Random(seed)

    def persona(self, key: str) -> ReaderPersona:
        """The persona for a reader name, or InvalidInput naming `prompt_key`."""
        try:
            return self.personas[key]
        except KeyError:
            known = ", ".join(sorted(self.personas))
            raise InvalidInput(
                "prompt_key", f"unknown reader {key!r}; known readers: {known}"
            ) from None

    def expected(self, items: list[ScoreRequest]) -> list[float]:
        """Noise-free like probability per item."""
        personas = [self.persona(item.prompt_key) for item in items]
        return [
            p.like_probability(item.completion) for p, item in zip(personas, items, strict=True)
        ]

    def score(self, items: list[ScoreRequest]) -> list[Score | None]:
        """One click draw per item; the whole batch is checked before any draw."""
        probs = self.expected(items)
        scores: list[Score | None] = []
        for item, prob in zip(items, probs, strict=True):
            liked = 1.0 if self._rng.random() < prob else 0.0
            scores.append(
                Score(
                    reward=liked,
                    parts=[RewardPart("like", liked)],
                    source=self.kind,
                    rater=item.prompt_key,
                )
            )
        return scores
