"""The single-process GRPO loop (bench/minimal_grpo.py) with the policy wrapped by peft: the
probe behind the LoRA table in bench/README.md (which parts of the tiny default model must be
trainable for it to learn the readers).

    R=8 python -m rewardloop.bench.lora_probe --max-steps 400 --eval-every 25 --lr 1e-3
    R=8 SAVE=lm_head TIE=1 python -m rewardloop.bench.lora_probe ...   # model.lora_embeddings
    R=0 FREEZE='wte|wpe' python -m rewardloop.bench.lora_probe ...     # full FT, embeddings frozen

Environment: R (rank, 0 = no adapter), ALPHA (16), MODS (model.lora_target_modules syntax,
all-linear), SAVE (peft modules_to_save, comma list), TIE (ensure_weight_tying), FREEZE (regex
of parameter names to freeze). The other flags are minimal_grpo's; it prints its JSON.
"""

from __future__ import annotations

import os
import re
import sys

from rewardloop import lora
from rewardloop.bench import minimal_grpo
from rewardloop.modeling import load_policy


def probe_policy(cfg):
    model, tok, path = load_policy(cfg)
    r = int(os.environ.get("R", "8"))
    if r:
        from peft import LoraConfig, get_peft_model

        save = os.environ.get("SAVE", "")
        config = LoraConfig(
            r=r,
            lora_alpha=float(os.environ.get("ALPHA", "16")),
            target_modules=lora.target_modules(os.environ.get("MODS", "all-linear")),
            lora_dropout=0.0,
            bias="none",
            task_type="CAUSAL_LM",
            modules_to_save=save.split(",") if save else None,
            ensure_weight_tying=bool(os.environ.get("TIE")),
        )
        model = get_peft_model(model, config)
    if os.environ.get("FREEZE"):
        for name, p in model.named_parameters():
            if re.search(os.environ["FREEZE"], name):
                p.requires_grad_(False)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"trainable parameters: {trainable}", file=sys.stderr)
    return model, tok, path


if __name__ == "__main__":
    minimal_grpo.load_policy = probe_policy
    minimal_grpo.main(sys.argv[1:] + ["--json"])
