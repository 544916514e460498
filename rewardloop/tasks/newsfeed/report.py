"""The build report of the news-feed model: how the freshly built model writes.

`sample_report` samples held-out prompts and says how many outputs are well-formed headlines,
which topics they are about and how often each reader would like them (the start like rates).
"""

from __future__ import annotations

from collections import Counter

from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

from rewardloop.tinymodel.pretrain import sample_texts

from .corpus import TOPICS, classify_headline
from .prompts import Prompt, eval_prompts
from .readers import READERS, like_probability


def sample_report(
    model: GPT2LMHeadModel,
    tokenizer: PreTrainedTokenizerFast,
    per_reader: int = 96,
    max_new_tokens: int = 24,
    seed: int = 0,
    prompts: list[Prompt] | None = None,
) -> dict:
    """Well-formed fraction, topic histogram and start like rate per reader on held-out prompts."""
    prompts = prompts if prompts is not None else eval_prompts()
    report: dict = {"like_rate": {}, "samples": {}}
    topics: Counter[str] = Counter()
    well_formed = total = 0
    for k, reader in enumerate(READERS):
        mine = [p.text for p in prompts if p.reader == reader.name]
        chosen = [mine[i % len(mine)] for i in range(per_reader)]
        texts = sample_texts(model, tokenizer, chosen, max_new_tokens, seed=seed + k)
        labels = [classify_headline(t) for t in texts]
        topics.update(t or "malformed" for t in labels)
        well_formed += sum(t is not None for t in labels)
        total += len(texts)
        rate = sum(like_probability(reader, t) for t in texts) / len(texts)
        report["like_rate"][reader.name] = round(rate, 4)
        report["samples"][reader.name] = [t.strip() for t in texts[:3]]
    report["well_formed"] = round(well_formed / max(total, 1), 4)
    report["topic_histogram"] = {t: topics.get(t, 0) for t in (*TOPICS, "malformed")}
    return report
