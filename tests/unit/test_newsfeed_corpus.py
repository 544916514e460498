"""The news-feed corpus, readers and prompts: headlines classify to their topic, garbage does not."""

from __future__ import annotations

from collections import Counter

import pytest

from rewardloop.tasks.newsfeed.corpus import (
    LEXICONS,
    TOPIC_WORDS,
    TOPICS,
    check_lexicons,
    classify_headline,
    generate_headlines,
)
from rewardloop.tasks.newsfeed.prompts import completion_text, eval_prompts, train_prompts
from rewardloop.tasks.newsfeed.readers import READERS, like_probability


@pytest.fixture(scope="module")
def corpus():
    return generate_headlines(6000, seed=0)


def test_thousands_of_distinct_headlines_across_all_topics(corpus):
    assert len({h.text for h in corpus}) == 6000
    counts = Counter(h.topic for h in corpus)
    assert set(counts) == set(TOPICS)
    assert min(counts.values()) >= 6000 // len(TOPICS) - 1


def test_every_generated_headline_classifies_to_its_own_topic(corpus):
    wrong = [(h.topic, h.text) for h in corpus if classify_headline(h.text) != h.topic]
    assert wrong == []


def test_generation_is_reproducible_and_seeded():
    assert generate_headlines(50, seed=3) == generate_headlines(50, seed=3)
    assert generate_headlines(50, seed=3) != generate_headlines(50, seed=4)


def test_topic_keyword_sets_are_disjoint():
    assert check_lexicons() == []
    topics = list(TOPIC_WORDS)
    for i, a in enumerate(topics):
        for b in topics[i + 1 :]:
            assert not TOPIC_WORDS[a] & TOPIC_WORDS[b]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "asdf qwer zxcv uiop hjkl",  # no known word
        "Chipmaker unveils",  # too short
        "Top striker clinches league title as shares jump",  # sports + business keywords
        "Top striker clinches league title league title",  # repeated bigram
        "Top striker wins wins title wins",  # a word three times
        "Top striker clinches league trophy xyzzy",  # an unknown word
        "in Boston on Monday this week",  # only neutral words
        "Top striker clinches league title " + " ".join(["in Boston on Monday"] * 2) + " today",
        "Top striker clinches league title in Boston on Monday this week sources say overnight "
        "at last today",  # too long
        "Top striker clinches league title \U0001f600",  # characters no headline has
    ],
)
def test_garbage_does_not_classify(text):
    assert classify_headline(text) is None


def test_classification_ignores_surrounding_space_and_case():
    assert classify_headline(" top striker CLINCHES league title\n") == "sports"
    assert classify_headline(completion_text("Central bank cuts interest rates")) == "business"


def test_each_topic_lexicon_has_every_slot_filled():
    for lex in LEXICONS.values():
        assert lex.subjects and lex.verbs and lex.objects and lex.tails


def test_readers_like_two_disjoint_topics_covering_all():
    liked = [t for r in READERS for t in r.liked_topics]
    assert len(READERS) == 3
    assert all(len(r.liked_topics) == 2 for r in READERS)
    assert sorted(liked) == sorted(TOPICS)


def test_uniform_topics_give_about_a_third_like_rate(corpus):
    for reader in READERS:
        rate = sum(like_probability(reader, h.text) for h in corpus) / len(corpus)
        assert rate == pytest.approx(0.9 / 3 + 0.1 * 2 / 3, abs=0.01)


def test_eval_prompts_hold_out_their_contexts():
    train, held_out = train_prompts(), eval_prompts()
    assert len(train) == 3 * 28 and len(held_out) == 3 * 7
    assert {p.context for p in train}.isdisjoint({p.context for p in held_out})
    for prompts in (train, held_out):
        assert {p.reader for p in prompts} == {r.name for r in READERS}
        assert all(p.text.startswith(p.context) and p.text.endswith(p.reader) for p in prompts)
