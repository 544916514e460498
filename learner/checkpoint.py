"""Checkpoints are Hugging Face directories plus the trainer state, so a run resumes and a user
loads the result with plain `transformers.AutoModelForCausalLM.from_pretrained(dir)`. A LoRA
run's checkpoint holds the merged weights there and its adapter in `dir/adapter/`, for
`peft.PeftModel.from_pretrained(base, dir/adapter)` (rewardloop/lora.py)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from rewardloop import lora

TRAINER_STATE = "trainer_state.pt"
META = "rewardloop.json"


def save_checkpoint(path: str | Path, model, tokenizer, trainer_state: dict, meta: dict) -> Path:
    """Write atomically: into a sibling temp dir, then swap it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    model = getattr(model, "module", model)
    lora.save_pretrained(model, tmp)  # with LoRA: merged weights here, the adapter in adapter/
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    torch.save(trainer_state, tmp / TRAINER_STATE)
    (tmp / META).write_text(json.dumps(meta, indent=2, sort_keys=True))
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)
    return path


def load_trainer_state(path: str | Path) -> dict | None:
    """The trainer state saved beside the model, or None for a plain HF model directory."""
    file = Path(path) / TRAINER_STATE
    return torch.load(file, map_location="cpu", weights_only=False) if file.exists() else None


def load_meta(path: str | Path) -> dict:
    file = Path(path) / META
    return json.loads(file.read_text()) if file.exists() else {}
