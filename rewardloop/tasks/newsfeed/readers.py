"""The simulated readers of the news-feed example: who likes which topics.

Three readers, each liking two of the six topics, the pairs disjoint. A model that writes every
topic equally often therefore pleases a reader about 1/3 of the time: with the default like
probabilities (0.9 liked, 0.1 otherwise) its expected like rate is 1/3*0.9 + 2/3*0.1 ~= 0.37.
`like_probability` is the one definition of a reader's taste; `feedback.sim.personas` draws clicks
from it and the default model's build report uses it for the start like rates.
"""

from __future__ import annotations

from dataclasses import dataclass

from rewardloop.tasks.newsfeed.corpus import classify_headline


@dataclass(frozen=True)
class Reader:
    name: str
    liked_topics: tuple[str, ...]


READERS: tuple[Reader, ...] = (
    Reader("alice", ("sports", "entertainment")),
    Reader("bob", ("tech", "science")),
    Reader("carol", ("business", "politics")),
)

READER_BY_NAME: dict[str, Reader] = {r.name: r for r in READERS}


def like_probability(
    reader: Reader, completion: str, like_prob: float = 0.9, dislike_prob: float = 0.1
) -> float:
    """P(reader likes completion): 0 if malformed, like_prob on a liked topic, else dislike_prob."""
    topic = classify_headline(completion)
    if topic is None:
        return 0.0
    return like_prob if topic in reader.liked_topics else dislike_prob
