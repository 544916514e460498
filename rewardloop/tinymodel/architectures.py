"""Tiny randomly initialised Llama-, Qwen2- and GPT-2-shaped models, built locally.

Users bring Hugging Face checkpoints of these families; the tests (and anyone checking a new
set-up) train tiny ones of the same shapes through the whole loop without downloading
anything. `build_dir` writes a model directory that `model.name_or_path` can point at: the
weights from `transformers` configs with small dimensions and the given tokenizer saved beside
them, so `AutoTokenizer` / `AutoModelForCausalLM.from_pretrained(dir)` load it like any other.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    Qwen2Config,
    Qwen2ForCausalLM,
)

ARCHITECTURES = ("gpt2", "llama", "qwen2")


def tiny_model(
    kind: str,
    vocab_size: int,
    eos_id: int,
    pad_id: int,
    width: int = 64,
    layers: int = 2,
    positions: int = 256,
    seed: int = 0,
) -> PreTrainedModel:
    """A randomly initialised causal LM of family `kind` (see ARCHITECTURES). Llama and Qwen2
    get grouped-query attention (2 query heads per key/value head) and rotary positions, GPT-2
    learned absolute positions: the two ways position ids can go wrong."""
    torch.manual_seed(seed)
    ids = dict(bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=pad_id)
    rotary = dict(
        vocab_size=vocab_size,
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=positions,
        **ids,
    )
    if kind == "llama":
        return LlamaForCausalLM(LlamaConfig(**rotary))
    if kind == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(**rotary, tie_word_embeddings=True))
    if kind == "gpt2":
        config = GPT2Config(
            vocab_size=vocab_size, n_embd=width, n_layer=layers, n_head=4, n_positions=positions,
            **ids,
        )  # fmt: skip
        return GPT2LMHeadModel(config)
    raise ValueError(f"kind: one of {ARCHITECTURES}, got {kind!r}")


def build_dir(kind: str, tokenizer, out_dir: str | Path, seed: int = 0, **dims) -> Path:
    """Save a tiny `kind` model and `tokenizer` into `out_dir` (an HF model directory)."""
    out = Path(out_dir)
    model = tiny_model(
        kind, len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id, seed=seed, **dims
    )
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
