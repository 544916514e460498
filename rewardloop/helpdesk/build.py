"""Build the default help-desk model once and cache it: tokenizer + pre-trained tiny GPT-2.

Same recipe and cache discipline as the news-feed model (`rewardloop.newsfeed.build`): the
cache entry is keyed by a hash of everything that changes the result, built once under a lock
into a temporary directory and renamed into place. The result is an ordinary Hugging Face
directory plus `build_info.json` (helpful rate per category at the start, answer kinds).

Pre-training uses one torch thread: a 0.5M-parameter model gains little from more, and one
thread keeps its pace when other processes compete for the cores (on a 2-core machine at load
8, two threads ran a step 6x slower than one), so the wall-clock budget buys a usable model.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rewardloop.config import ModelConfig
from rewardloop.newsfeed.build import INFO_FILE, _log, ensure_built, keyed_dir
from rewardloop.newsfeed.pretrain import make_model, pretrain

from .corpus import CORPUS_VERSION
from .pretrain import encode_examples, sample_report
from .tokenizer import build_tokenizer

BUILD_FORMAT = 2
"""Bump when the build recipe changes in a way the key fields do not capture."""


def build_key(cfg: ModelConfig, seed: int) -> dict:
    """Everything that affects the built model."""
    return {
        "task": "helpdesk",
        "format": BUILD_FORMAT,
        "corpus_version": CORPUS_VERSION,
        "vocab_size": cfg.vocab_size,
        "n_layer": cfg.n_layer,
        "n_embd": cfg.n_embd,
        "pretrain_seconds": float(cfg.pretrain_seconds),
        "seed": seed,
    }


def cache_path(cfg: ModelConfig, seed: int = 0) -> Path:
    """Where the model for these settings lives (built or not)."""
    return keyed_dir(cfg.cache_dir, "helpdesk", build_key(cfg, seed))


def ensure_default_model(
    cfg: ModelConfig, seed: int = 0, lock_timeout_s: float | None = None
) -> Path:
    """The cached default help-desk model directory, built first if needed (once, locked)."""
    timeout = lock_timeout_s if lock_timeout_s is not None else 600.0 + 10 * cfg.pretrain_seconds
    return ensure_built(
        cache_path(cfg, seed), lambda tmp: build_default_model(tmp, cfg, seed), timeout
    )


def build_default_model(
    out_dir: Path, cfg: ModelConfig, seed: int = 0, per_category: int = 64
) -> dict:
    """Train tokenizer and model into `out_dir` (no caching, no lock); returns the build info."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    _log(
        f"building the default help-desk model in {out_dir} ({cfg.pretrain_seconds:.0f}s pretrain)"
    )
    tokenizer = build_tokenizer(cfg.vocab_size, seed)
    tokenizer.save_pretrained(out_dir)
    model = make_model(cfg, tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    _log(f"tokenizer: {len(tokenizer)} tokens; model: {n_params / 1e6:.2f}M parameters")
    n_examples = int(min(40000, max(2000, 1000 * cfg.pretrain_seconds)))
    examples = encode_examples(tokenizer, n_examples, seed)
    stats = pretrain(
        model, tokenizer, cfg.pretrain_seconds, seed=seed, log=_log, examples=examples, threads=1
    )
    report = sample_report(model, tokenizer, per_category=per_category, seed=seed)
    model.save_pretrained(out_dir)
    info = {
        "key": build_key(cfg, seed),
        "seconds": round(time.perf_counter() - start, 2),
        "num_params": n_params,
        "pretrain": {k: round(v, 4) if isinstance(v, float) else v for k, v in stats.items()},
        "final_loss": round(stats["final_loss"], 4),
        **report,
    }
    (out_dir / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    _log(
        f"built in {info['seconds']:.0f}s: loss {info['final_loss']:.3f}, "
        f"helpful rate {report['helpful_rate_mean']:.2f}, kinds {report['kinds']}"
    )
    return info
