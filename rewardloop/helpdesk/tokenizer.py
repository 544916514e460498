"""The help-desk tokenizer: the news-feed recipe (byte-level BPE) trained on help-desk text.

Byte-level, so any text round-trips and the simulated user, not the tokenizer, decides what
counts as an answer. Trained on generated answers (as completions) and every prompt, with each
step's first word boosted so that choosing a step is one token.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerFast

from rewardloop.newsfeed.tokenizer import train_tokenizer

from .corpus import GENERIC, OPENERS, STEPS, generate_answers
from .prompts import completion_text, eval_prompts, train_prompts


def build_tokenizer(
    vocab_size: int, seed: int = 0, n_answers: int = 20000
) -> PreTrainedTokenizerFast:
    """Train the help-desk BPE of `vocab_size` tokens."""
    texts = [completion_text(a.text) for a in generate_answers(n_answers, seed)]
    texts += [p.text for p in train_prompts() + eval_prompts()] * 50
    texts += [completion_text(w) for w in opening_words()] * 300
    return train_tokenizer(texts, vocab_size)


def opening_words() -> list[str]:
    """The first word of every step, opener and generic sentence, e.g. "Restart", "Sorry"."""
    phrases = [s for steps in STEPS.values() for s in steps] + list(OPENERS) + list(GENERIC)
    return sorted(
        {p.split(" ")[0].capitalize() for p in phrases if p}
        | {p.split(" ")[0] for steps in STEPS.values() for p in steps}
    )
