"""LoRA through `peft`: wrap the policy, move only the adapter, save it two ways.

With `model.lora_r > 0` every process that holds the policy (learner, rollout workers, the
evaluator, serving replicas) wraps the same base model in the same adapter (`wrap`), so adapter
weights mean the same thing everywhere. The learner trains only the adapter; it publishes only
the adapter's tensors (`publish_state`), a few percent of the full weights' bytes, and a
worker applies them onto its base with `load_weights`, which also takes a full state dict (the
non-LoRA path), so one call serves both. The reference policy for the KL penalty is the base
itself with the adapter disabled (`reference_off`), not a frozen copy of the whole model.
`model.lora_embeddings` adds the token embedding matrix to what is trained and published
(peft's `modules_to_save`), which the tiny default model needs to learn at all (README, LoRA).

A checkpoint of a LoRA run (`save_pretrained`) is the merged model in the directory itself,
loadable with plain `AutoModelForCausalLM.from_pretrained(dir)`, plus the adapter in
`dir/adapter/`, loadable with `PeftModel.from_pretrained(base, dir/adapter)`.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from rewardloop.errors import ConfigError

ADAPTER_DIR = "adapter"
ALL_LINEAR = "all-linear"
AUTO = "auto"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def target_modules(spec: str) -> str | list[str] | None:
    """`model.lora_target_modules` -> peft's `target_modules`: "all-linear" (every Linear but the
    output layer), "auto" (None: peft's per-architecture default, the attention's q/v or GPT-2's
    c_attn) or a comma-separated list of module names ("q_proj,v_proj")."""
    spec = spec.strip()
    if spec == ALL_LINEAR:
        return ALL_LINEAR
    if spec == AUTO:
        return None
    names = [n.strip() for n in spec.split(",") if n.strip()]
    bad = [n for n in names if not _NAME.match(n)]
    if not names or bad:
        raise ConfigError(
            f"model.lora_target_modules: {spec!r} is not all-linear, auto or a comma-separated "
            f"list of module names (bad: {bad or 'empty'})"
        )
    return names


def is_peft(model: torch.nn.Module) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def wrap(
    model: torch.nn.Module, r: int, alpha: float, modules: str, embeddings: bool = False
) -> torch.nn.Module:
    """The model with a LoRA adapter of rank `r` (scale alpha / r) on `modules`; r = 0: as is.

    `embeddings` also trains the token embedding matrix in full next to the adapter (peft's
    `modules_to_save`), tied to the output layer when the model ties them (GPT-2, the default
    model: one trainable matrix, as in full fine-tuning). A small model keeps much of what a
    prompt word means for the output in those rows: the default news-feed model learns neither
    with LoRA alone nor fully fine-tuned with its embeddings frozen (README, LoRA). Dropout is
    0: the learner's log-probs must match the workers'."""
    if r == 0:
        return model
    from peft import LoraConfig, get_peft_model

    save, tie = _embedding_modules(model) if embeddings else (None, False)
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        target_modules=target_modules(modules),
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
        modules_to_save=save,
        ensure_weight_tying=tie,
    )
    try:
        return get_peft_model(model, config)
    except ValueError as exc:  # peft: "Target modules {...} not found in the base model"
        raise ConfigError(f"model.lora_target_modules: {modules!r}: {exc}") from exc


def _embedding_modules(model: torch.nn.Module) -> tuple[list[str], bool]:
    """peft's `modules_to_save` for the token embeddings, and whether to keep them tied.

    Tied embeddings are named by the output layer (peft's tying looks for its name among
    EMBEDDING_LAYER_NAMES, then trains one matrix for both); untied, the input embedding."""
    from peft.utils.constants import EMBEDDING_LAYER_NAMES

    inp, out = model.get_input_embeddings(), model.get_output_embeddings()
    names = {m: n.split(".")[-1] for n, m in model.named_modules() if m is inp or m is out}
    if out is None or out.weight is not inp.weight:
        return [names[inp]], False
    if names[out] not in EMBEDDING_LAYER_NAMES:
        raise ConfigError(
            f"model.lora_embeddings: peft keeps tied embeddings tied only for an output layer "
            f"named one of {EMBEDDING_LAYER_NAMES}, this model's is {names[out]!r}; "
            "set model.lora_embeddings=false"
        )
    return [names[out]], True


def scoring_module(model: torch.nn.Module) -> torch.nn.Module:
    """What to run forward for log-probs: the HF model inside a PeftModel (its LoRA layers are
    injected in place, so it computes the adapted policy) or the model itself. The HF model
    keeps `base_model` / `get_output_embeddings`, so the fused output-layer path still applies."""
    return model.get_base_model() if is_peft(model) else model


def reference_off(model: torch.nn.Module):
    """Context in which `model` computes the base policy (adapter disabled): the KL reference."""
    if not is_peft(model):
        raise TypeError("reference_off needs a PeftModel")
    return model.disable_adapter()


def publish_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What workers need for a new version, as detached CPU copies: the adapter's tensors only
    for a PeftModel (a trained tied embedding once: its output-layer key is the same tensor,
    which the worker's model shares too), else the full state dict."""
    if not is_peft(model):
        return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    from peft import get_peft_model_state_dict

    # the adapter only: peft would add the whole embedding matrices when they are adapted
    state, seen = {}, set()
    for k, v in get_peft_model_state_dict(model, save_embedding_layers=False).items():
        if v.data_ptr() not in seen:
            seen.add(v.data_ptr())
            state[k] = v.detach().to("cpu", copy=True)
    return state


def state_bytes(state: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in state.values())


def full_weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of the whole model's weights as a full (non-LoRA) version would carry them: every
    parameter and buffer of the base, the adapter's own tensors (and trained copies) left out."""
    state = scoring_module(model).state_dict()
    return state_bytes(
        {k: v for k, v in state.items() if ".lora_" not in k and ".modules_to_save." not in k}
    )


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Apply a published version: adapter tensors onto a PeftModel, or a full state dict.

    Strict either way: an adapter key the model lacks, or a full state dict that does not
    match, raises instead of leaving some weights from an older version."""
    # an adapter version: LoRA tensors (and any modules_to_save, e.g. the embeddings), never the
    # base layers a full state dict of a PeftModel has
    adapter_only = any(".lora_" in k for k in state) and not any(".base_layer." in k for k in state)
    if adapter_only and not is_peft(model):
        raise ConfigError(
            "model.lora_r: this weight version is a LoRA adapter but this model has none; give "
            "the worker the learner's model.lora_* settings (r, alpha, target_modules, embeddings)"
        )
    if adapter_only:
        from peft import set_peft_model_state_dict

        try:
            result = set_peft_model_state_dict(model, _with_tied_keys(model, state))
        except KeyError as exc:  # peft: a modules_to_save tensor (the embeddings) is missing
            raise ValueError(f"adapter keys this version lacks: {exc}") from exc
        if result.unexpected_keys:
            raise ValueError(f"adapter keys the model lacks: {result.unexpected_keys[:5]}")
        return
    model.load_state_dict(state)


def _with_tied_keys(model: torch.nn.Module, state: dict) -> dict:
    """`state` plus the keys `publish_state` left out as ties (peft's loader wants every key):
    a key whose tensor in this model is the same as that of a key `state` has."""
    from peft import get_peft_model_state_dict

    own = get_peft_model_state_dict(model, save_embedding_layers=False)
    by_ptr = {own[k].data_ptr(): k for k in state if k in own}
    tied = {k: state[by_ptr[v.data_ptr()]] for k, v in own.items() if v.data_ptr() in by_ptr}
    return {**tied, **state}


def merged_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of the plain HF model with the adapter folded in (W + B A x alpha / r),
    as CPU tensors under the HF names. Computed layer by layer from `get_delta_weight`, so
    neither a second model nor an in-place merge / unmerge (which would round the base weights
    by an ulp each checkpoint) is needed."""
    base = scoring_module(model)
    deltas = {}
    for name, module in base.named_modules():
        if hasattr(module, "get_delta_weight") and hasattr(module, "base_layer"):
            with torch.no_grad():
                delta = sum(module.get_delta_weight(a) for a in module.active_adapters)
            deltas[f"{name}.base_layer.weight"] = delta
    out = {}
    for key, value in base.state_dict().items():
        if ".lora_" in key or ".original_module." in key:  # the trained copy replaces it
            continue
        key = re.sub(r"\.modules_to_save\.[^.]+\.", ".", key)
        value = value.detach()
        if key in deltas:
            value = value + deltas[key].to(value.dtype)
        out[key.replace(".base_layer.", ".")] = value.to("cpu", copy=True)
    return out


def save_pretrained(model: torch.nn.Module, directory: str | Path) -> None:
    """HF directory loadable by plain transformers; for a PeftModel the merged weights there
    and the adapter in `directory/adapter` (PeftModel.from_pretrained(base, that))."""
    directory = Path(directory)
    if not is_peft(model):
        model.save_pretrained(directory, safe_serialization=True)
        return
    scoring_module(model).save_pretrained(
        directory, state_dict=merged_state(model), safe_serialization=True
    )
    model.save_pretrained(
        directory / ADAPTER_DIR, safe_serialization=True, save_embedding_layers=False
    )
