"""The help-desk corpus: six categories of customer questions, answers, and a helpfulness judge.

Nothing is downloaded. A category has questions (what customers ask) and steps (what fixes
it). A *helpful* answer gives the right steps ("Sure, first open the login page, then click
forgot password."); an *unhelpful* one is generic ("Please contact support for more help.") or
gives the steps of another category. The pre-training corpus mixes the three kinds, so the
pre-trained model answers fluently but is helpful only part of the time: learning to be
helpful is the feedback loop's job.

`judge_answer(category, text)` reads an answer the way the simulated users do:

- malformed: a word outside the corpus vocabulary, fewer than 3 or more than 40 words, or a
  repeated word trigram (babbling);
- off_topic: a step (or a step keyword) of another category;
- helpful: at least two distinct steps of the question's category, nothing off-topic;
- partial: one step of the question's category;
- generic: no steps at all (apologies, "contact support", ...).

Step words are category-specific (`check_lexicons` proves the sets disjoint), so a judge that
reads words can tell a step's category. Bump `CORPUS_VERSION` whenever the word lists,
templates, prompts (`prompts.py`) or the tokenizer recipe change: it keys the built model cache.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

CORPUS_VERSION = 1

CATEGORIES: tuple[str, ...] = ("password", "billing", "shipping", "returns", "account", "technical")

# fmt: off
QUESTIONS: dict[str, tuple[str, ...]] = {
    "password": ("I forgot my password", "How do I reset my password?",
                 "My password reset email never came", "I am locked out after too many login attempts",
                 "The login page says my password is wrong", "How can I change my password?"),
    "billing": ("I was charged twice this month", "Where can I find my invoice?",
                "My card payment was declined", "How do I get a refund for a charge?",
                "Why is my bill higher than usual?", "How do I update my payment card?"),
    "shipping": ("Where is my package?", "My delivery is late", "How do I track my order?",
                 "The tracking says delivered but nothing is here",
                 "Can I change my delivery address?", "When will my order ship?"),
    "returns": ("How do I return an item?", "The item I got is damaged",
                "Can I exchange this for another size?", "I received the wrong item",
                "What is your return policy?", "The shoes do not fit, can I send them back?"),
    "account": ("How do I change my username?", "How do I delete my account?",
                "Can I update the email on my account?", "How do I set up two factor authentication?",
                "I want to change my profile picture", "How do I download my account data?"),
    "technical": ("The app keeps crashing", "I get an error when I open the app",
                  "The website will not load", "The screen stays blank after I sign in",
                  "Everything is very slow today", "Videos freeze in the app"),
}
"""What customers ask, per category (every question has a keyword of its own category)."""

QUESTION_KEYWORDS: dict[str, frozenset[str]] = {
    "password": frozenset({"password", "login", "locked"}),
    "billing": frozenset({"charged", "invoice", "payment", "refund", "charge", "bill", "card"}),
    "shipping": frozenset({"package", "delivery", "track", "tracking", "ship", "delivered"}),
    "returns": frozenset({"return", "damaged", "exchange", "received", "fit", "item"}),
    "account": frozenset({"username", "account", "profile", "factor", "authentication"}),
    "technical": frozenset({"app", "crashing", "error", "website", "load", "screen", "slow",
                            "freeze"}),
}
"""Words that give a question's category away (`question_category`)."""

STEPS: dict[str, tuple[str, ...]] = {
    "password": ("open the login page", "click forgot password", "type your recovery email",
                 "follow the reset link", "pick a stronger password", "sign back in"),
    "billing": ("go to the billing tab", "check the newest invoice", "update the card on file",
                "request a refund for the charge", "compare the charge dates",
                "cancel the duplicate payment"),
    "shipping": ("find the tracking number", "enter it on the carrier site",
                 "confirm the delivery address", "wait three business days",
                 "ask a neighbor about the parcel", "choose express delivery"),
    "returns": ("start a return from your orders", "print the prepaid label",
                "pack the item in its box", "drop the box at a post office", "keep the receipt",
                "expect store credit within a week"),
    "account": ("visit your profile settings", "edit your display name",
                "enable two step verification", "change the linked phone",
                "download your data archive", "delete old sessions"),
    "technical": ("restart the app", "clear the browser cache", "install the current version",
                  "turn off the vpn", "reconnect to wifi", "send us the error code"),
}
"""What fixes it, per category: a helpful answer gives two or three of these."""

OPENERS: tuple[str, ...] = ("", "Sure,", "Happy to help:", "No problem,", "Good question,",
                            "Of course,")
GENERIC: tuple[str, ...] = (
    "Thanks for reaching out, we will look into it.", "Please contact support for more help.",
    "Sorry for the trouble, please try again later.", "We have passed this on to the right team.",
    "Our team is looking into this.", "Thank you for your patience.",
    "We apologize for the inconvenience.", "Please see our help center.",
)
"""Unhelpful filler: polite, on no topic at all."""

FUNCTION_WORDS: frozenset[str] = frozenset(
    {"the", "a", "your", "it", "its", "to", "on", "us", "in", "at", "for", "and", "then", "first",
     "finally", "from", "about", "with", "of"}
)
# fmt: on

HELPFUL_TEMPLATES: tuple[str, ...] = (
    "{O} first {s1}, then {s2}.",
    "{O} {s1}, then {s2}.",
    "{O} {s1} and {s2}.",
    "{O} first {s1}, then {s2}, and finally {s3}.",
)

KINDS: tuple[str, ...] = ("helpful", "partial", "generic", "off_topic", "malformed")
MIN_WORDS, MAX_WORDS = 3, 40

_WORD = re.compile(r"[a-z0-9]+")
_ALLOWED = re.compile(r"^[A-Za-z0-9 ,.:'?!\-]+$")


def words_of(text: str) -> list[str]:
    """Lower-case words of a text (letters and digits; punctuation separates)."""
    return _WORD.findall(text.lower())


STEP_WORDS: dict[str, frozenset[str]] = {
    c: frozenset(w for s in steps for w in words_of(s)) - FUNCTION_WORDS
    for c, steps in STEPS.items()
}
"""Keywords of each category's steps (pairwise disjoint, see `check_lexicons`)."""

NEUTRAL_WORDS: frozenset[str] = (
    FUNCTION_WORDS
    | frozenset(w for o in OPENERS for w in words_of(o))
    | frozenset(w for g in GENERIC for w in words_of(g))
    | frozenset({"next"})
)
"""Words any answer may use; they never decide a category."""

VOCABULARY: frozenset[str] = NEUTRAL_WORDS.union(*STEP_WORDS.values())
_CATEGORY_OF: dict[str, str] = {w: c for c, ws in STEP_WORDS.items() for w in ws}
_STEP_WORDS_LIST: dict[str, list[tuple[str, ...]]] = {
    c: [tuple(words_of(s)) for s in steps] for c, steps in STEPS.items()
}


def check_lexicons() -> list[str]:
    """Step keywords shared by two categories or with the neutral words (must be empty)."""
    from rewardloop.tasks.base import keyword_clashes

    return keyword_clashes(STEP_WORDS, NEUTRAL_WORDS) + keyword_clashes(
        {c: set(w) for c, w in QUESTION_KEYWORDS.items()}, what="question"
    )


def question_category(question: str) -> str | None:
    """The category whose question keywords the text uses most (None if none or a tie)."""
    counts = {c: sum(w in kw for w in words_of(question)) for c, kw in QUESTION_KEYWORDS.items()}
    best = max(counts.values())
    winners = [c for c, n in counts.items() if n == best]
    return winners[0] if best > 0 and len(winners) == 1 else None


@dataclass(frozen=True)
class Verdict:
    """How an answer reads to a user who asked about `category`."""

    kind: str
    """helpful, partial, generic, off_topic or malformed (see the module docstring)."""
    steps: int = 0
    """Distinct steps of the question's category the answer gives."""


def _steps_in(words: list[str], category: str) -> int:
    found = 0
    for step in _STEP_WORDS_LIST[category]:
        n = len(step)
        if any(tuple(words[i : i + n]) == step for i in range(len(words) - n + 1)):
            found += 1
    return found


def judge_answer(category: str, text: str) -> Verdict:
    """Read `text` as an answer to a question of `category` (see the module docstring)."""
    if category not in STEPS:
        raise ValueError(f"unknown category {category!r}; known: {', '.join(CATEGORIES)}")
    text = text.strip()
    if not text or not _ALLOWED.match(text):
        return Verdict("malformed")
    words = words_of(text)
    if not MIN_WORDS <= len(words) <= MAX_WORDS or any(w not in VOCABULARY for w in words):
        return Verdict("malformed")
    trigrams = list(zip(words, words[1:], words[2:], strict=False))
    if len(set(trigrams)) != len(trigrams):
        return Verdict("malformed")
    if any(_CATEGORY_OF.get(w, category) != category for w in words):
        return Verdict("off_topic")
    steps = _steps_in(words, category)
    if steps >= 2:
        return Verdict("helpful", steps)
    if steps == 1:
        return Verdict("partial", steps)
    return Verdict("generic")


def helpful_probability(
    category: str, text: str, helpful_prob: float = 0.9, unhelpful_prob: float = 0.1
) -> float:
    """P(a user asking about `category` finds `text` helpful), noise-free.

    helpful -> helpful_prob; partial -> halfway; generic or off_topic -> unhelpful_prob;
    malformed -> 0.
    """
    kind = judge_answer(category, text).kind
    if kind == "helpful":
        return helpful_prob
    if kind == "partial":
        return (helpful_prob + unhelpful_prob) / 2
    if kind == "malformed":
        return 0.0
    return unhelpful_prob


@dataclass(frozen=True)
class Answer:
    category: str
    """The category of the question it answers."""
    kind: str
    """helpful, generic or off_topic."""
    text: str


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def step_answer(steps: tuple[str, ...], rng: random.Random) -> str:
    """An answer that walks through two or three of `steps` (one category's)."""
    template = rng.choice(HELPFUL_TEMPLATES)
    s1, s2, s3 = rng.sample(steps, 3)
    opener = rng.choice(OPENERS)
    text = template.format(O=opener, s1=s1, s2=s2, s3=s3).strip()
    return _cap(text)


def generic_answer(rng: random.Random) -> str:
    """One or two polite sentences that help with nothing."""
    first, second = rng.sample(GENERIC, 2)
    return first if rng.random() < 0.6 else f"{first} {second}"


def make_answer(category: str, kind: str, rng: random.Random) -> Answer:
    """An answer of `kind` (helpful, generic, off_topic) to a question of `category`."""
    if kind == "helpful":
        return Answer(category, kind, step_answer(STEPS[category], rng))
    if kind == "off_topic":
        other = rng.choice([c for c in CATEGORIES if c != category])
        return Answer(category, kind, step_answer(STEPS[other], rng))
    if kind == "generic":
        return Answer(category, kind, generic_answer(rng))
    raise ValueError(f"kind must be helpful, off_topic or generic, got {kind!r}")


PRETRAIN_MIX: dict[str, float] = {"helpful": 0.4, "off_topic": 0.3, "generic": 0.3}
"""How often each kind of answer follows a question in the pre-training corpus."""


def generate_answers(n: int, seed: int, mix: dict[str, float] | None = None) -> list[Answer]:
    """`n` answers, categories in turn, kinds drawn from `mix` (default PRETRAIN_MIX)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    mix = mix or PRETRAIN_MIX
    rng = random.Random(seed)
    kinds, weights = list(mix), list(mix.values())
    return [
        make_answer(CATEGORIES[i % len(CATEGORIES)], rng.choices(kinds, weights)[0], rng)
        for i in range(n)
    ]
