"""The whole default-model build, once for every task: tokenizer, model, pre-training, report.

A task hands over a `Recipe`: a name, a key of what changes its result, its corpus (generated
completions, each with the prompt key it belongs under, and every prompt) and its report on
held-out prompts. From the corpus the recipe trains the tokenizer (`train_task_tokenizer`) and
draws the pre-training pairs: each completion under a random prompt of its key (any prompt for
key ""). `ensure(recipe, cfg)` returns the cached Hugging Face directory (`config.json`,
`model.safetensors`, tokenizer files, `build_info.json` with the report), building it first
under the cache's lock.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from transformers import PreTrainedTokenizerFast

from rewardloop.config import ModelConfig

from .cache import INFO_FILE, ensure_built, keyed_dir, log
from .pretrain import encode_pairs, make_model, pretrain
from .tokenizer import train_task_tokenizer

Examples = list[tuple[list[int], list[int]]]
Keyed = list[tuple[str, str]]
"""(key, text) pairs: a completion and the prompt key it belongs under."""

TOKENIZER_CORPUS = 20000
"""Generated completions the tokenizer is trained on."""


@dataclass(frozen=True)
class Recipe:
    name: str
    """The cache directory prefix and the name in build logs, e.g. "newsfeed"."""
    key: dict
    """Everything besides the model config that changes the result (corpus version, format)."""
    completions: Callable[[int, int], Keyed]
    """(n, seed) -> n generated completions as the policy should write them, with their key."""
    prompts: Callable[[], list]
    """Every prompt (training and held-out), each with `.text` and `.key`, in a fixed order."""
    first_words: Callable[[], list[str]]
    """Words a completion may start with: each is made one token (a topic or a step in one pick)."""
    report: Callable[..., dict]
    """report(model, tokenizer, seed=seed) -> the build report (start rates, samples)."""
    summary: str = ""
    """The report's line in the build log, formatted with the report's keys, e.g. "{kinds}"."""
    use_steps: bool = True
    """Pre-train model.pretrain_steps steps (False: as many as pretrain_seconds allows)."""
    threads: int = 0
    """torch threads while pre-training (0 = one per core)."""


def from_module(module_name: str, **options) -> Recipe:
    """The Recipe a task's build module declares by name: NAME, KEY, SUMMARY and the functions
    completions, prompts, first_words and sample_report (`options`: use_steps, threads)."""
    import importlib

    m = importlib.import_module(module_name)
    return Recipe(
        m.NAME,
        m.KEY,
        m.completions,
        m.prompts,
        m.first_words,
        m.sample_report,
        m.SUMMARY,
        **options,
    )


def train_tokenizer(
    recipe: Recipe, vocab_size: int, seed: int = 0, n: int = TOKENIZER_CORPUS
) -> PreTrainedTokenizerFast:
    """The task's BPE, trained on n generated completions, every prompt and the first words."""
    texts = [text for _, text in recipe.completions(n, seed)]
    prompts = [p.text for p in recipe.prompts()]
    return train_task_tokenizer(texts, prompts, recipe.first_words(), vocab_size)


def examples(recipe: Recipe, tokenizer: PreTrainedTokenizerFast, n: int, seed: int) -> Examples:
    """n (prompt ids, completion ids + eos) pairs: each completion under a random prompt of its
    key (any prompt for key "")."""
    rng = random.Random(seed)
    prompts = recipe.prompts()
    pools: dict[str, list[str]] = {"": [p.text for p in prompts]}
    for p in prompts:
        if p.key:
            pools.setdefault(p.key, []).append(p.text)
    completions = recipe.completions(n, seed)
    chosen = [rng.choice(pools[key]) for key, _ in completions]
    return encode_pairs(tokenizer, chosen, [text for _, text in completions])


def build_key(recipe: Recipe, cfg: ModelConfig, seed: int) -> dict:
    key = {
        "task": recipe.name,
        **recipe.key,
        "vocab_size": cfg.vocab_size,
        "n_layer": cfg.n_layer,
        "n_embd": cfg.n_embd,
        "pretrain_seconds": float(cfg.pretrain_seconds),
        "seed": seed,
    }
    if recipe.use_steps:
        key["pretrain_steps"] = cfg.pretrain_steps
    return key


def cache_path(recipe: Recipe, cfg: ModelConfig, seed: int = 0) -> Path:
    """Where the model of this recipe and these settings lives (built or not)."""
    return keyed_dir(cfg.cache_dir, recipe.name, build_key(recipe, cfg, seed))


def ensure(
    recipe: Recipe, cfg: ModelConfig, seed: int = 0, lock_timeout_s: float | None = None
) -> Path:
    """The cached model directory, building it first if needed (once, under a lock)."""
    timeout = lock_timeout_s if lock_timeout_s is not None else 600.0 + 10 * cfg.pretrain_seconds
    return ensure_built(
        cache_path(recipe, cfg, seed), lambda tmp: build(recipe, tmp, cfg, seed), timeout
    )


def build(recipe: Recipe, out_dir: Path, cfg: ModelConfig, seed: int = 0) -> dict:
    """Train tokenizer and model into `out_dir` (no caching, no lock); returns the build info."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    steps = cfg.pretrain_steps if recipe.use_steps else 0
    log(
        f"building the default {recipe.name} model in {out_dir} "
        f"({steps or 'time-bound'} steps, at most {cfg.pretrain_seconds:.0f}s)"
    )
    tokenizer = train_tokenizer(recipe, cfg.vocab_size, seed)
    tokenizer.save_pretrained(out_dir)
    model = make_model(cfg, tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"tokenizer: {len(tokenizer)} tokens; model: {n_params / 1e6:.2f}M parameters")
    n_examples = int(min(40000, max(2000, 1000 * cfg.pretrain_seconds)))  # small budgets start fast
    stats = pretrain(
        model,
        tokenizer,
        examples(recipe, tokenizer, n_examples, seed),
        cfg.pretrain_seconds,
        seed=seed,
        log=log,
        threads=recipe.threads,
        steps=steps,
    )
    report = recipe.report(model, tokenizer, seed=seed)
    model.save_pretrained(out_dir)
    info = {
        "key": build_key(recipe, cfg, seed),
        "seconds": round(time.perf_counter() - start, 2),
        "num_params": n_params,
        "pretrain": {k: round(v, 4) if isinstance(v, float) else v for k, v in stats.items()},
        "final_loss": round(stats["final_loss"], 4),
        **report,
    }
    (out_dir / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    log(
        f"built in {info['seconds']:.0f}s: loss {info['final_loss']:.3f}, {recipe.summary.format(**report)}"
    )
    return info
