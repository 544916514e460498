"""The default tokenizer: a byte-level BPE trained on the project's own headlines and prompts.

Byte-level means any text round-trips (no unknown token), so a policy can write anything and
the reader decides whether it is a headline. The result is a plain
`transformers.PreTrainedTokenizerFast`; `save_pretrained(dir)` makes it loadable with
`AutoTokenizer.from_pretrained(dir)` like any Hugging Face tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from rewardloop.newsfeed.corpus import LEXICONS, generate_headlines
from rewardloop.newsfeed.prompts import completion_text, eval_prompts, train_prompts

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE of `vocab_size` tokens (bytes + specials + merges) on `texts`."""
    if vocab_size < 300:
        raise ValueError(f"vocab_size must be >= 300 (256 bytes + merges), got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        padding_side="left",
    )


def build_tokenizer(
    vocab_size: int, seed: int = 0, n_headlines: int = 20000
) -> PreTrainedTokenizerFast:
    """The news-feed tokenizer: trained on generated headlines (as completions) and all prompts."""
    texts = [completion_text(h.text) for h in generate_headlines(n_headlines, seed)]
    # Every training example starts with a prompt: weight them so their words get merges.
    texts += [p.text for p in train_prompts() + eval_prompts()] * 50
    # A headline's first word names its topic; boosted, each becomes one token, so the policy
    # picks a topic with one token instead of a chain of letters shared across topics.
    texts += [completion_text(w) for w in opening_words()] * 300
    return train_tokenizer(texts, vocab_size)


def opening_words() -> list[str]:
    """The first word of every subject phrase, e.g. "Chipmaker", "Top"."""
    return sorted({s.split(" ")[0] for lex in LEXICONS.values() for s in lex.subjects})
