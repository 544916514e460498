"""The news-feed corpus: six topics, the project's own word lists, and a headline classifier.

Nothing is downloaded. Headlines come from a few templates filled from per-topic lexicons
(subjects, verbs, objects, tails) and neutral slots (places, times, sources). Every word of a
topic lexicon belongs to that topic alone, so `classify_headline` can tell a headline's topic
from its words, and the simulated readers (see `readers.py`) can judge a model's output:

- a well-formed headline uses only words of the lexicon, has 4..16 words, at least two keywords
  of exactly one topic, no word more than twice and no repeated bigram;
- anything else (garbage, mixed topics, repetition, too short or long) classifies as None.

Bump `CORPUS_VERSION` whenever the word lists, templates, prompts (`prompts.py`) or the tokenizer
recipe change: it keys the cache of the built default model.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

CORPUS_VERSION = 3

TOPICS: tuple[str, ...] = ("sports", "tech", "science", "business", "politics", "entertainment")

MIN_WORDS, MAX_WORDS = 4, 16
MIN_KEYWORDS = 2


@dataclass(frozen=True)
class Lexicon:
    """The phrases of one topic; each slot's phrases fit every template."""

    subjects: tuple[str, ...]
    verbs: tuple[str, ...]
    objects: tuple[str, ...]
    tails: tuple[str, ...]


# fmt: off
LEXICONS: dict[str, Lexicon] = {
    "sports": Lexicon(
        subjects=("Top striker", "Veteran quarterback", "Rookie pitcher", "Olympic sprinter",
                  "Tennis champion", "Head coach", "Underdog club", "Title contender",
                  "Goalkeeper", "Marathon runner", "Hockey captain", "Lakers guard"),
        verbs=("clinches", "defends", "chases", "scores", "wins", "loses", "seals", "misses",
               "dominates", "grabs"),
        objects=("league title", "championship trophy", "playoff spot", "gold medal",
                 "winning goal", "home game", "semifinal match", "derby clash", "Grand Slam final",
                 "penalty shootout", "world cup qualifier", "tournament opener"),
        tails=("in overtime thriller", "to stay unbeaten", "ahead of the playoffs",
               "before a sellout crowd", "in season opener", "despite late injury"),
    ),
    "tech": Lexicon(
        subjects=("Chipmaker", "Software giant", "Smartphone maker", "Cloud provider",
                  "Robotics startup", "App developer", "Browser vendor", "Cybersecurity firm",
                  "Gadget maker", "Open source project", "Search engine", "Laptop brand"),
        verbs=("unveils", "ships", "patches", "launches", "delays", "upgrades", "releases",
               "debuts", "tests", "recalls"),
        objects=("new processor", "AI chatbot", "encryption update", "foldable phone",
                 "operating system", "smart glasses", "server chips", "wireless earbuds",
                 "coding assistant", "quantum computer", "privacy feature", "battery software"),
        tails=("amid privacy concerns", "in major update", "to outpace competitors",
               "after security flaw", "for developers", "with faster chips"),
    ),
    "science": Lexicon(
        subjects=("Astronomers", "Biologists", "Physicists", "Climate researchers",
                  "Marine scientists", "Geologists", "Chemists", "Neuroscientists",
                  "Space engineers", "University researchers", "Fossil hunters", "Research teams"),
        verbs=("discover", "detect", "map", "observe", "identify", "measure", "sequence",
               "reveal", "confirm", "study"),
        objects=("distant galaxy", "ancient fossil", "new species", "gravitational waves",
                 "deep sea volcano", "brain circuit", "exoplanet atmosphere", "dinosaur eggs",
                 "melting glacier", "rare particle", "coral genome", "comet dust"),
        tails=("in landmark study", "using new telescope", "in peer reviewed paper",
               "after decade of research", "in lab experiment", "with satellite data"),
    ),
    "business": Lexicon(
        subjects=("Retail chain", "Central bank", "Oil producer", "Automaker", "Airline",
                  "Investment fund", "Grocery chain", "Shipping company", "Insurer",
                  "Hedge fund", "Steel producer", "Hotel group"),
        verbs=("acquires", "raises", "cuts", "reports", "trims", "boosts", "sells", "buys",
               "forecasts", "slashes"),
        objects=("quarterly profit", "interest rates", "dividend payout", "rival supplier",
                 "stock buyback", "sales forecast", "earnings outlook", "factory jobs",
                 "fuel prices", "merger offer", "revenue guidance", "bond issue"),
        tails=("as shares jump", "as investors cheer", "amid inflation fears",
               "after weak earnings", "to cut costs", "as markets slide"),
    ),
    "politics": Lexicon(
        subjects=("Senator", "Governor", "Prime minister", "Parliament", "Opposition leader",
                  "Mayor", "Congress", "Cabinet", "Election commission", "Ruling party",
                  "Foreign minister", "Supreme court"),
        verbs=("passes", "blocks", "vetoes", "proposes", "debates", "backs", "rejects",
               "approves", "drafts", "challenges"),
        objects=("budget bill", "voting reform", "tax plan", "immigration law",
                 "campaign pledge", "trade treaty", "border policy", "ballot initiative",
                 "healthcare bill", "polling date", "minimum wage", "defense spending"),
        tails=("ahead of the vote", "after heated debate", "in narrow vote",
               "amid protests", "before recess", "in late session"),
    ),
    "entertainment": Lexicon(
        subjects=("Pop star", "Film director", "Indie band", "Streaming service", "Actress",
                  "Comedian", "Rapper", "Broadway composer", "Movie studio", "Talk show host",
                  "Country singer", "Animation studio"),
        verbs=("premieres", "announces", "cancels", "films", "headlines", "tops",
               "teases", "stars in", "remakes", "reunites for"),
        objects=("summer blockbuster", "new album", "stadium tour", "comedy special",
                 "hit sequel", "music video", "reality show", "holiday musical",
                 "fantasy series", "box office chart", "awards gala", "concert film"),
        tails=("to rave reviews", "at Cannes festival", "with celebrity cameo",
               "after fan petition", "on streaming charts", "at red carpet event"),
    ),
}

PLACES: tuple[str, ...] = ("Boston", "Chicago", "London", "Paris", "Tokyo", "Berlin", "Sydney",
                           "Toronto", "Madrid", "Seoul", "Denver", "Mumbai")
WHENS: tuple[str, ...] = ("on Monday", "on Friday", "this week", "today", "overnight",
                          "at last", "once more", "this weekend")
SOURCES: tuple[str, ...] = ("sources say", "report says", "officials say")
# fmt: on

TEMPLATES: tuple[str, ...] = (
    "{S} {V} {O}",
    "{S} {V} {O} {T}",
    "{S} {V} {O} in {P}",
    "{S} {V} {O} {W}",
    "{S} in {P} {V} {O}",
    "{S} {V} {O}, {R}",
    "{S} {V} {O} {W}, {R}",
)
"""Every headline starts with its subject, so the first word already says the topic."""

_WORD = re.compile(r"[a-z0-9]+")
_ALLOWED = re.compile(r"^[A-Za-z0-9 ,:'\-]+$")


def words_of(text: str) -> list[str]:
    """Lower-case words of a text (letters and digits; punctuation separates)."""
    return _WORD.findall(text.lower())


def _phrase_words(phrases: tuple[str, ...]) -> set[str]:
    return {w for p in phrases for w in words_of(p)}


_SLOT_WORDS = frozenset(_phrase_words(PLACES + WHENS + SOURCES))
# fmt: off
_FUNCTION_WORDS = frozenset(
    {"in", "the", "a", "of", "to", "as", "at", "on", "for", "with", "after", "before", "amid",
     "despite", "ahead", "new", "late", "major", "data", "faster"}
)
# fmt: on
NEUTRAL_WORDS: frozenset[str] = _SLOT_WORDS | _FUNCTION_WORDS
"""Words any topic may use; they never decide a topic."""

TOPIC_WORDS: dict[str, frozenset[str]] = {
    topic: frozenset(
        _phrase_words(lex.subjects + lex.verbs + lex.objects + lex.tails) - _FUNCTION_WORDS
    )
    for topic, lex in LEXICONS.items()
}
"""Keywords per topic: pairwise disjoint and disjoint from the slot words (`check_lexicons`)."""

_TOPIC_OF: dict[str, str] = {w: t for t, ws in TOPIC_WORDS.items() for w in ws}


def check_lexicons() -> list[str]:
    """Keywords shared by two topics or with a neutral slot (must be empty)."""
    from rewardloop.tasks.base import keyword_clashes

    return keyword_clashes(TOPIC_WORDS, _SLOT_WORDS)


@dataclass(frozen=True)
class Headline:
    topic: str
    text: str


def _fill(template: str, lex: Lexicon, rng: random.Random) -> str:
    return template.format(
        S=rng.choice(lex.subjects),
        V=rng.choice(lex.verbs),
        O=rng.choice(lex.objects),
        T=rng.choice(lex.tails),
        P=rng.choice(PLACES),
        W=rng.choice(WHENS),
        R=rng.choice(SOURCES),
    )


def generate_headlines(n: int, seed: int) -> list[Headline]:
    """`n` distinct headlines, topics in turn (balanced), reproducible from `seed`."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[Headline] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise ValueError(f"cannot draw {n} distinct headlines; the corpus is smaller")
        topic = TOPICS[len(out) % len(TOPICS)]
        text = _fill(rng.choice(TEMPLATES), LEXICONS[topic], rng)
        if text not in seen:
            seen.add(text)
            out.append(Headline(topic, text))
    return out


def classify_headline(text: str) -> str | None:
    """The topic of a well-formed headline, else None (see the module docstring)."""
    text = text.strip()
    if not text or not _ALLOWED.match(text):
        return None
    words = words_of(text)
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return None
    counts: dict[str, int] = {}
    for w in words:
        counts[w] = counts.get(w, 0) + 1
    if max(counts.values()) > 2:
        return None
    bigrams = list(zip(words, words[1:], strict=False))
    if len(set(bigrams)) != len(bigrams):
        return None
    topics: set[str] = set()
    keywords = 0
    for w in words:
        if w in _TOPIC_OF:
            topics.add(_TOPIC_OF[w])
            keywords += 1
        elif w not in NEUTRAL_WORDS:
            return None  # a word the readers do not know
    if len(topics) != 1 or keywords < MIN_KEYWORDS:
        return None
    return topics.pop()
