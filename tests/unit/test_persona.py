"""Simulated readers as a reward source: probabilities, Bernoulli clicks, errors."""

from __future__ import annotations

import math

import pytest

from rewardloop.config import RewardConfig
from rewardloop.errors import InvalidInput
from rewardloop.feedback.sim.personas import PersonaReward, ReaderPersona
from rewardloop.feedback.sources.base import RewardSource, ScoreRequest
from rewardloop.tasks.newsfeed.readers import READER_BY_NAME

SPORTS = " Top striker clinches league title in Madrid"
BUSINESS = " Central bank cuts interest rates as markets slide"
GARBAGE = " striker striker striker bank"


def req(completion: str, reader: str = "alice", i: int = 0) -> ScoreRequest:
    return ScoreRequest(
        id=str(i), prompt=f"Monday noon feed for {reader}", completion=completion, prompt_key=reader
    )


def test_like_probability_by_topic_and_form():
    alice = ReaderPersona(READER_BY_NAME["alice"], like_prob=0.8, dislike_prob=0.2)
    assert alice.like_probability(SPORTS) == 0.8
    assert alice.like_probability(BUSINESS) == 0.2
    assert alice.like_probability(GARBAGE) == 0.0
    carol = ReaderPersona(READER_BY_NAME["carol"])
    assert carol.like_probability(BUSINESS) == 0.9
    assert carol.like_probability(SPORTS) == 0.1


def test_persona_rejects_inverted_probabilities():
    with pytest.raises(InvalidInput):
        ReaderPersona(READER_BY_NAME["alice"], like_prob=0.1, dislike_prob=0.9)


def test_expected_is_noise_free_and_follows_config():
    source = PersonaReward(RewardConfig(like_prob=0.7, dislike_prob=0.05), seed=0)
    assert isinstance(source, RewardSource) and source.kind == "persona"
    items = [req(SPORTS, "alice"), req(SPORTS, "bob"), req(GARBAGE, "carol")]
    assert source.expected(items) == [0.7, 0.05, 0.0]
    assert source.expected(items) == source.expected(items)


def test_scores_are_clicks_with_a_like_part():
    source = PersonaReward(RewardConfig(), seed=1)
    scores = source.score([req(SPORTS, "alice", i) for i in range(20)] + [req(GARBAGE)])
    assert all(s.reward in (0.0, 1.0) for s in scores)
    assert all(s.parts[0].name == "like" and s.parts[0].value == s.reward for s in scores)
    assert all(s.source == "persona" and s.rater == "alice" for s in scores)
    assert scores[-1].reward == 0.0  # malformed is never liked


@pytest.mark.parametrize("completion,p", [(SPORTS, 0.9), (BUSINESS, 0.1)])
def test_bernoulli_mean_within_statistical_bound(completion, p):
    n = 4000
    source = PersonaReward(RewardConfig(), seed=7)
    scores = source.score([req(completion, "alice", i) for i in range(n)])
    mean = sum(s.reward for s in scores) / n
    assert abs(mean - p) < 5 * math.sqrt(p * (1 - p) / n)  # ~5 sigma


def test_same_seed_same_clicks_other_seed_differs():
    items = [req(BUSINESS, "bob", i) for i in range(200)]
    a = [s.reward for s in PersonaReward(seed=3).score(items)]
    b = [s.reward for s in PersonaReward(seed=3).score(items)]
    c = [s.reward for s in PersonaReward(seed=4).score(items)]
    assert a == b and a != c


def test_unknown_reader_is_invalid_input_naming_prompt_key():
    source = PersonaReward(seed=0)
    with pytest.raises(InvalidInput) as err:
        source.score([req(SPORTS, "alice"), req(SPORTS, "mallory")])
    assert err.value.field == "prompt_key" and "mallory" in str(err.value)
    with pytest.raises(InvalidInput):
        source.expected([req(SPORTS, "")])
