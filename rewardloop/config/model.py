"""`model`: which policy to train, and how the built-in default model is built."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from .base import DTYPES, _require, _Section, one_of

_MODULES = re.compile(r"^(all-linear|auto|[A-Za-z_][\w.]*(\s*,\s*[A-Za-z_][\w.]*)*)$")


@dataclass(frozen=True)
class ModelConfig(_Section):
    section: ClassVar[str] = "model"
    name_or_path: str = "default"
    """`default`: the task's tiny model, built once and cached; else a local HF dir or id."""
    cache_dir: str = "~/.cache/rewardloop"
    """Where built default models and tokenizers are cached."""
    pretrain_seconds: float = 240.0
    """Cap on the wall-clock seconds of the default model's pre-training."""
    pretrain_steps: int = 800
    """Pre-training steps of the default model (about a minute on 2 idle cores; 0 = as many as
    pretrain_seconds allows). Fixed steps build the same model on a busy machine as on an idle one."""
    n_layer: int = 2
    """Layers of the default GPT-2-shaped model."""
    n_embd: int = 128
    """Width of the default model."""
    vocab_size: int = 1024
    """BPE vocabulary size of the default tokenizer."""
    dtype: str = "float32"
    """Learner compute dtype on a GPU: float32, or bfloat16 autocast with float32 master weights."""
    chat_template: str = "auto"
    """auto: prompts go through the tokenizer's chat template when it has one (one user turn +
    the assistant's opening); none: always the plain prompt text."""
    lora_r: int = 0
    """LoRA rank (peft): train only a rank-r adapter and send workers only its weights
    (0 = full fine-tuning)."""
    lora_alpha: float = 16.0
    """LoRA scale numerator: the adapter's update is B A x lora_alpha / lora_r."""
    lora_target_modules: str = "all-linear"
    """Modules that get an adapter: all-linear (every Linear but the output layer), auto
    (peft's per-architecture default: q_proj,v_proj or GPT-2's c_attn) or a comma list."""
    lora_embeddings: bool = False
    """With LoRA, also train the token embedding matrix in full (tied to the output layer when
    the model ties them); a version then carries it too. The tiny default model learns with LoRA
    only this way (examples/lora.yaml); costly for large vocabularies."""

    def __post_init__(self) -> None:
        _require(bool(self.name_or_path), self.key("name_or_path"), "must not be empty")
        _require(self.pretrain_seconds > 0, self.key("pretrain_seconds"), "must be > 0")
        _require(
            self.pretrain_steps >= 0, self.key("pretrain_steps"), "must be >= 0 (0 = time-bound)"
        )
        _require(self.n_layer >= 1, self.key("n_layer"), "must be >= 1")
        _require(
            self.n_embd >= 8 and self.n_embd % 4 == 0,
            self.key("n_embd"),
            "must be a multiple of 4, >= 8",
        )
        _require(self.vocab_size >= 300, self.key("vocab_size"), "must be >= 300 (bytes + merges)")
        _require(self.dtype in DTYPES, self.key("dtype"), one_of(DTYPES))
        _require(
            self.chat_template in ("auto", "none"),
            self.key("chat_template"),
            f"auto or none, got {self.chat_template!r}",
        )
        _require(
            self.lora_r >= 0,
            self.key("lora_r"),
            f"must be >= 0 (0 = full fine-tuning), got {self.lora_r!r}",
        )
        _require(
            self.lora_alpha > 0, self.key("lora_alpha"), f"must be > 0, got {self.lora_alpha!r}"
        )
        _require(
            _MODULES.match(self.lora_target_modules.strip()) is not None,
            self.key("lora_target_modules"),
            f"all-linear, auto or comma-separated module names, got {self.lora_target_modules!r}",
        )
