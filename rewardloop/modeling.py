"""Load the policy model and tokenizer: the task's built-in default or any local HF model.

`model.name_or_path: default` builds (once, cached) the task's tiny model; anything else is a
Hugging Face directory or a hub id already in the local cache. Nothing is ever downloaded here
(`local_files_only=True`). Either way the tokenizer comes back with an eos and a pad token id,
because generation stops on eos and batches are padded.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from rewardloop.config import ModelConfig
from rewardloop.errors import ConfigError


def default_model_dir(cfg: ModelConfig, task: str = "newsfeed", seed: int = 0) -> Path:
    """Build (or reuse) the task's default model; its module is `rewardloop.<task>.build`."""
    try:
        build = importlib.import_module(f"rewardloop.{task}.build")
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"model.name_or_path: task {task!r} has no default model; set a model directory"
        ) from exc
    return Path(build.ensure_default_model(cfg, seed=seed))


def load_policy(cfg: ModelConfig, task: str = "newsfeed") -> tuple[PreTrainedModel, object, str]:
    """(model, tokenizer, path) for `cfg.name_or_path`; model in float32 and eval mode."""
    path = str(default_model_dir(cfg, task)) if cfg.name_or_path == "default" else cfg.name_or_path
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    except OSError as exc:
        raise ConfigError(
            f"model.name_or_path: cannot load {path!r} from local files ({exc}); give a model "
            "directory, an id already in the Hugging Face cache, or `default`"
        ) from exc
    ensure_special_tokens(model, tokenizer)
    model.float().eval()
    return model, tokenizer, path


def ensure_special_tokens(model: PreTrainedModel, tokenizer) -> None:
    """Make sure eos and pad ids exist (pad falls back to eos) and the model config agrees."""
    if tokenizer.eos_token_id is None:
        eos = model.config.eos_token_id
        if isinstance(eos, list):
            eos = eos[0] if eos else None
        if eos is None:
            raise ConfigError(
                "model.name_or_path: the tokenizer and model define no eos token; "
                "generation could never stop"
            )
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    if model.config.eos_token_id is None:
        model.config.eos_token_id = tokenizer.eos_token_id
