"""Pre-training data and the build report of the default help-desk policy.

Each example is "<prompt> <answer><eos>": a question of some category followed by an answer
drawn from `corpus.PRETRAIN_MIX` (helpful, another category's steps, or generic filler). The
pre-trained model therefore answers fluently and usually on topic, yet only part of the time
helpfully. The training loop itself is the news-feed one (`newsfeed.pretrain.pretrain`, given
these examples); `sample_report` says how often the result is helpful on held-out prompts.
"""

from __future__ import annotations

import random
from collections import Counter

from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

from rewardloop.newsfeed.pretrain import N_POSITIONS, sample_texts
from rewardloop.prompts import Prompt

from .corpus import CATEGORIES, KINDS, generate_answers, helpful_probability, judge_answer
from .prompts import completion_text, eval_prompts, train_prompts


def encode_examples(
    tokenizer: PreTrainedTokenizerFast, n: int, seed: int
) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, completion ids + eos) for `n` answers, each under a prompt of its category."""
    rng = random.Random(seed)
    by_category: dict[str, list[str]] = {c: [] for c in CATEGORIES}
    for p in train_prompts() + eval_prompts():
        by_category[p.key].append(p.text)
    answers = generate_answers(n, seed)
    chosen = [rng.choice(by_category[a.category]) for a in answers]
    p_ids = tokenizer(chosen, add_special_tokens=False)["input_ids"]
    c_ids = tokenizer([completion_text(a.text) for a in answers], add_special_tokens=False)[
        "input_ids"
    ]
    eos = tokenizer.eos_token_id
    return [(p, (c + [eos])[: N_POSITIONS - len(p)]) for p, c in zip(p_ids, c_ids, strict=True)]


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
