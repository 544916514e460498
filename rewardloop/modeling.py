"""Load the policy model and tokenizer: the task's built-in default or any local HF model.

`model.name_or_path: default` builds (once, cached) the task's tiny model (the task's
`default_model`, see rewardloop/tasks/base.py); anything else is a
Hugging Face directory or a hub id already in the local cache. Nothing is ever downloaded here
(`local_files_only=True`). Either way the tokenizer comes back with an eos and a pad token id,
because generation stops on eos and batches are padded.
"""

from __future__ import annotations

from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from rewardloop import lora
from rewardloop.config import ModelConfig, RunConfig
from rewardloop.errors import ConfigError


def _run_config(cfg: ModelConfig | RunConfig, task: str) -> RunConfig:
    return cfg if isinstance(cfg, RunConfig) else RunConfig(task=task, model=cfg)


def default_model_dir(cfg: ModelConfig | RunConfig, task: str = "newsfeed", seed: int = 0) -> Path:
    """Build (or reuse) the task's default model. Given a RunConfig, its task and its model
    section are used (`task` is for a bare ModelConfig)."""
    from rewardloop.tasks import get_task

    run = _run_config(cfg, task)
    return Path(get_task(run.task).default_model(run, seed))


def load_policy(
    cfg: ModelConfig | RunConfig, task: str = "newsfeed"
) -> tuple[PreTrainedModel, object, str]:
    """(model, tokenizer, path) for `model.name_or_path`; model in float32 and eval mode,
    wrapped in a LoRA adapter (a peft PeftModel) when `model.lora_r > 0`."""
    model_cfg = cfg.model if isinstance(cfg, RunConfig) else cfg
    path = (
        str(default_model_dir(cfg, task))
        if model_cfg.name_or_path == "default"
        else model_cfg.name_or_path
    )
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    except OSError as exc:
        raise ConfigError(
            f"model.name_or_path: cannot load {path!r} from local files ({exc}); give a model "
            "directory, an id already in the Hugging Face cache, or `default`"
        ) from exc
    ensure_special_tokens(model, tokenizer)
    if model_cfg.chat_template == "none":  # prompts.encode_prompt then uses the plain text
        tokenizer.chat_template = None
    model.float().eval()
    if model_cfg.lora_r:  # every holder of the policy wraps it the same way (rewardloop/lora.py)
        model = lora.wrap(
            model,
            model_cfg.lora_r,
            model_cfg.lora_alpha,
            model_cfg.lora_target_modules,
            model_cfg.lora_embeddings,
        ).eval()
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
