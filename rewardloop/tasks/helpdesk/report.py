"""The build report of the help-desk model: how often the freshly built model is helpful.

`sample_report` samples held-out prompts per category and reports the helpful rate and the
kinds of answer (helpful, partial, generic, off-topic, malformed) it writes.
"""

from __future__ import annotations

from collections import Counter

from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

from rewardloop.prompts import Prompt
from rewardloop.tinymodel.pretrain import N_POSITIONS, sample_texts

from .corpus import CATEGORIES, KINDS, helpful_probability, judge_answer
from .prompts import eval_prompts


def sample_report(
    model: GPT2LMHeadModel,
    tokenizer: PreTrainedTokenizerFast,
    per_category: int = 64,
    max_new_tokens: int = 32,
    seed: int = 0,
    prompts: list[Prompt] | None = None,
) -> dict:
    """Helpful rate per category and how answers read (kinds) on held-out prompts."""
    prompts = prompts if prompts is not None else eval_prompts()
    texts = [p.text for p in prompts]
    longest = max(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
    max_new_tokens = min(max_new_tokens, N_POSITIONS - longest)  # tiny vocabularies: long prompts
    report: dict = {"helpful_rate": {}, "samples": {}}
    kinds: Counter[str] = Counter()
    for k, category in enumerate(CATEGORIES):
        mine = [p.text for p in prompts if p.key == category]
        chosen = [mine[i % len(mine)] for i in range(per_category)]
        texts = sample_texts(model, tokenizer, chosen, max_new_tokens, seed=seed + k)
        kinds.update(judge_answer(category, t).kind for t in texts)
        rate = sum(helpful_probability(category, t) for t in texts) / len(texts)
        report["helpful_rate"][category] = round(rate, 4)
        report["samples"][category] = [t.strip() for t in texts[:3]]
    rates = report["helpful_rate"].values()
    report["helpful_rate_mean"] = round(sum(rates) / len(rates), 4)
    total = max(1, sum(kinds.values()))
    report["kinds"] = {kind: round(kinds.get(kind, 0) / total, 4) for kind in KINDS}
    return report
