"""A tiny GPT-2, its pre-training on (prompt, completion) pairs, and a KV-cached sampler.

Pre-training covers completion tokens only (labels are -100 on the prompt), with AdamW, warm-up
then cosine decay, for a fixed number of steps capped by a wall-clock budget: fixed steps build
the same model on a busy machine as on an idle one. Dropout is off in the model so that the
workers' behavior log-probs and the learner's recomputation agree exactly.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable

import torch
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from rewardloop.config import ModelConfig
from rewardloop.sampling import sample_completions

N_POSITIONS = 64
N_HEAD = 4


def make_model(cfg: ModelConfig, tokenizer: PreTrainedTokenizerFast) -> GPT2LMHeadModel:
    """A fresh GPT-2 of the configured shape; dropout off so behavior and learner log-probs agree."""
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=N_POSITIONS,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=N_HEAD,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2LMHeadModel(config)


def encode_pairs(
    tokenizer: PreTrainedTokenizerFast, prompts: list[str], completions: list[str]
) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, completion ids + eos) per pair, the completion cut to fit N_POSITIONS."""
    p_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    c_ids = tokenizer(completions, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    return [(p, (c + [eos])[: N_POSITIONS - len(p)]) for p, c in zip(p_ids, c_ids, strict=True)]


def _batch(
    examples: list[tuple[list[int], list[int]]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (input_ids, attention_mask, labels); labels are -100 off the completion."""
    width = max(len(p) + len(c) for p, c in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for i, (p, c) in enumerate(examples):
        row = p + c
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
        labels[i, len(p) : len(row)] = torch.tensor(c)
    return ids, mask, labels


def pretrain(
    model: GPT2LMHeadModel,
    tokenizer: PreTrainedTokenizerFast,
    examples: list[tuple[list[int], list[int]]],
    seconds: float,
    seed: int = 0,
    batch_size: int = 64,
    lr: float = 3e-3,
    warmup_steps: int = 30,
    log: Callable[[str], None] = lambda _msg: None,
    threads: int = 0,
    steps: int = 0,
) -> dict:
    """Train for `steps` optimizer steps (0 = until `seconds` run out; `seconds` always caps the
    time) on all cores; returns {steps, final_loss, ...}. Fixed steps give the same model on a
    busy machine as on an idle one.

    `examples` are (prompt ids, completion ids + eos) pairs (`encode_pairs`).
    `threads`: torch threads (0 = one per core).
    """
    torch.manual_seed(seed)
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads or os.cpu_count() or 1)
    model.train()
    start = time.perf_counter()
    step, losses, next_log = 0, [], 5.0
    try:
        while (elapsed := time.perf_counter() - start) < seconds and (not steps or step < steps):
            frac = step / steps if steps else elapsed / seconds
            scale = min(1.0, (step + 1) / warmup_steps) * (
                0.1 + 0.45 * (1 + math.cos(math.pi * frac))
            )
            for group in opt.param_groups:
                group["lr"] = lr * scale
            ids, mask, labels = _batch(rng.sample(examples, batch_size), tokenizer.pad_token_id)
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            losses.append(loss.item())
            if elapsed >= next_log:
                log(
                    f"pretrain {elapsed:5.1f}s/{seconds:.0f}s step {step} loss {_mean_tail(losses):.3f}"
                )
                next_log += 10.0
    finally:
        torch.set_num_threads(old_threads)
        model.eval()
    return {
        "steps": step,
        "final_loss": _mean_tail(losses),
        "seconds": time.perf_counter() - start,
        "examples_seen": step * batch_size,
    }


def _mean_tail(values: list[float], n: int = 20) -> float:
    tail = values[-n:]
    return sum(tail) / len(tail) if tail else float("nan")


def sample_texts(
    model: GPT2LMHeadModel,
    tokenizer: PreTrainedTokenizerFast,
    prompts: list[str],
    max_new_tokens: int = 24,
    temperature: float = 1.0,
    seed: int = 0,
) -> list[str]:
    """One sampled completion per prompt (the rollout sampler, `rewardloop.sampling`), decoded
    without eos: what the build reports judge."""
    eos = tokenizer.eos_token_id
    samples = sample_completions(
        model,
        tokenizer(prompts, add_special_tokens=False)["input_ids"],
        1,
        max_new_tokens,
        eos_id=eos,
        pad_id=tokenizer.pad_token_id,
        temperature=temperature,
        generator=torch.Generator().manual_seed(seed),
    )
    return [tokenizer.decode([t for t in s.completion_ids if t != eos]) for s in samples]
