"""Build the default news-feed model once and cache it: tokenizer + pre-trained tiny GPT-2.

The cache directory is keyed by a hash of everything that changes the result (corpus version,
vocab size, model shape, pre-training budget, seed), so a changed setting builds a new model
and an unchanged one is reused. Building is atomic and exclusive: a process takes an fcntl lock
next to the cache entry, builds into a temporary directory and renames it into place, so a
reader never sees half a model and two processes never build the same one twice.

The result is an ordinary Hugging Face directory (`config.json`, `model.safetensors`,
tokenizer files) plus `build_info.json` with the build's own report.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rewardloop.config import ModelConfig
from rewardloop.errors import Unavailable
from rewardloop.newsfeed.corpus import CORPUS_VERSION
from rewardloop.newsfeed.pretrain import make_model, pretrain, sample_report
from rewardloop.newsfeed.tokenizer import build_tokenizer

BUILD_FORMAT = 1
"""Bump when the build recipe changes in a way the key fields do not capture."""

INFO_FILE = "build_info.json"


def _log(message: str) -> None:
    print(f"[rewardloop] {message}", file=sys.stderr, flush=True)


def build_key(cfg: ModelConfig, seed: int) -> dict:
    """Everything that affects the built model."""
    return {
        "task": "newsfeed",
        "format": BUILD_FORMAT,
        "corpus_version": CORPUS_VERSION,
        "vocab_size": cfg.vocab_size,
        "n_layer": cfg.n_layer,
        "n_embd": cfg.n_embd,
        "pretrain_seconds": float(cfg.pretrain_seconds),
        "pretrain_steps": cfg.pretrain_steps,
        "seed": seed,
    }


def keyed_dir(cache_dir: str, prefix: str, key: dict) -> Path:
    """`<cache_dir>/<prefix>-<hash of key>`: one directory per distinct build recipe."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir).expanduser() / f"{prefix}-{digest}"


def cache_path(cfg: ModelConfig, seed: int = 0) -> Path:
    """Where the model for these settings lives (built or not)."""
    return keyed_dir(cfg.cache_dir, "newsfeed", build_key(cfg, seed))


def ensure_default_model(
    cfg: ModelConfig, seed: int = 0, lock_timeout_s: float | None = None
) -> Path:
    """The cached default model directory, building it first if needed (once, under a lock)."""
    timeout = lock_timeout_s if lock_timeout_s is not None else 600.0 + 10 * cfg.pretrain_seconds
    # looked up at call time, so a test can count builds by patching build_default_model
    return ensure_built(
        cache_path(cfg, seed), lambda tmp: build_default_model(tmp, cfg, seed), timeout
    )


def ensure_built(final: Path, build: Callable[[Path], object], timeout: float) -> Path:
    """`final`, first built by `build(tmp_dir)` if it has no INFO_FILE yet: once, under an fcntl
    lock next to it, into a temporary directory renamed into place (shared by every task)."""
    if (final / INFO_FILE).exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f"{final.name}.lock", "w") as lock:
        _acquire(lock, timeout, final)
        try:
            if (final / INFO_FILE).exists():  # another process built it while we waited
                return final
            if (
                final.exists()
            ):  # debris of a crash between rename and info (cannot happen) or manual edits
                shutil.rmtree(final)
            tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
            try:
                build(tmp)
                tmp.rename(final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return final


def _acquire(lock, timeout_s: float, final: Path) -> None:
    deadline = time.monotonic() + timeout_s
    announced = False
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"model.cache_dir: another process has been building {final} for over "
                    f"{timeout_s:.0f}s; remove its .lock file if that process is gone"
                ) from None
            if not announced:
                _log(f"waiting for another process to finish building {final}")
                announced = True
            time.sleep(0.2)


def build_default_model(
    out_dir: Path, cfg: ModelConfig, seed: int = 0, per_reader: int = 96
) -> dict:
    """Train tokenizer and model into `out_dir` (no caching, no lock); returns the build info."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    _log(
        f"building the default news-feed model in {out_dir} ({cfg.pretrain_steps} steps, at most {cfg.pretrain_seconds:.0f}s)"
    )
    tokenizer = build_tokenizer(cfg.vocab_size, seed)
    tokenizer.save_pretrained(out_dir)
    model = make_model(cfg, tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    _log(f"tokenizer: {len(tokenizer)} tokens; model: {n_params / 1e6:.2f}M parameters")
    n_examples = int(min(40000, max(2000, 1000 * cfg.pretrain_seconds)))  # small budgets start fast
    stats = pretrain(
        model,
        tokenizer,
        cfg.pretrain_seconds,
        seed=seed,
        n_examples=n_examples,
        log=_log,
        steps=cfg.pretrain_steps,
    )
    report = sample_report(model, tokenizer, per_reader=per_reader, seed=seed)
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
        f"well-formed {report['well_formed']:.2f}, like rates {report['like_rate']}"
    )
    return info
