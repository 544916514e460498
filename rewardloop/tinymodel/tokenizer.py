"""A byte-level BPE trained on a task's own text: any text round-trips (no unknown token).

The result is a plain `transformers.PreTrainedTokenizerFast`; `save_pretrained(dir)` makes it
loadable with `AutoTokenizer.from_pretrained(dir)` like any Hugging Face tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

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


def train_task_tokenizer(
    completions: list[str], prompts: list[str], first_words: list[str], vocab_size: int
) -> PreTrainedTokenizerFast:
    """The recipe every task uses: completions as written, every prompt weighted x50 so its words
    get merges, and each completion's possible first word x300 so that choosing it is one token
    (the policy then picks a topic or a step with one token, not a chain of letters)."""
    texts = list(completions) + list(prompts) * 50
    texts += [" " + w for w in first_words] * 300
    return train_tokenizer(texts, vocab_size)
