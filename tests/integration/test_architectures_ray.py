"""Tiny random GPT-2-, Llama- and Qwen2-shaped models through the whole Ray loop (one local Ray,
the three runs one after another): each trains, finishes and saves a checkpoint whose weights
moved; the Qwen2 run trains a LoRA adapter with a chat template on its tokenizer, so its
versions carry only adapter bytes and its checkpoint loads both merged and with peft."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from rewardloop.config import ModelConfig, load_config
from rewardloop.modeling import default_model_dir
from rewardloop.prompts import encode_prompt
from rewardloop.tinymodel.architectures import build_dir

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
HERE = Path(__file__).resolve()


def text_length(prompts, completions, metadata):
    """A reward random models' completions differ on (a persona likes none of their gibberish,
    and equal rewards would give every step a zero gradient)."""
    return [min(len(c), 30) / 30 for c in completions]


RUNS = {"gpt2": [], "llama": [], "qwen2": ["model.lora_r=4", "model.lora_alpha=8"]}
STEPS = 3


@pytest.fixture(scope="module")
def runs(model_cache, ray_local, tmp_path_factory):
    """The task's own tokenizer (from the default model) beside each tiny model."""
    from rewardloop.cluster.run import train

    tok_dir = default_model_dir(ModelConfig(cache_dir=model_cache))
    out = {}
    for kind, extra in RUNS.items():
        tok = AutoTokenizer.from_pretrained(tok_dir, local_files_only=True)
        if kind == "qwen2":
            tok.chat_template = CHATML
        model_dir = build_dir(kind, tok, tmp_path_factory.mktemp(f"{kind}-model"), width=32)
        run_dir = tmp_path_factory.mktemp(f"{kind}-run")
        cfg = load_config(
            None,
            [
                f"model.name_or_path={model_dir}",
                f"model.cache_dir={model_cache}",
                f"learner.max_steps={STEPS}",
                "learner.lr=1e-2",
                "learner.warmup_steps=0",
                "learner.groups_per_step=2",
                "rollout.group_size=4",
                "rollout.max_new_tokens=6",
                "rollout.num_workers=1",
                "eval.every_steps=0",
                "reward.kind=function",
                f"reward.function={HERE}:text_length",
                "eval.samples_per_prompt=1",
                f"out={run_dir}",
                *extra,
            ],
        )
        out[kind] = (model_dir, run_dir, train(cfg, progress=False))
    return out


@pytest.mark.parametrize("kind", list(RUNS))
def test_each_architecture_trains_through_the_ray_loop(runs, kind):
    model_dir, run_dir, summary = runs[kind]
    assert summary["error"] == "" and summary["steps"] == STEPS
    steps = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [s for s in steps if "event" not in s]
    assert len(steps) == STEPS and all(s["skipped"] == 0 for s in steps)
    assert all(torch.isfinite(torch.tensor(s["loss"])) for s in steps)
    base = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True).state_dict()
    final = AutoModelForCausalLM.from_pretrained(run_dir / "checkpoint", local_files_only=True)
    assert type(final).__name__.lower().startswith(kind)
    trained = final.state_dict()
    moved = [k for k in base if not torch.equal(base[k], trained[k])]
    assert moved, f"{kind}: no parameter changed"
    if kind != "qwen2":  # full fine-tuning: a full version per step
        assert summary["weight_bytes_per_version"] == summary["full_weight_bytes"]


def test_the_lora_run_sends_adapter_bytes_and_saves_both_ways(runs):
    model_dir, run_dir, summary = runs["qwen2"]
    adapter, full = summary["weight_bytes_per_version"], summary["full_weight_bytes"]
    assert 0 < adapter < full / 4, (adapter, full)
    base = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
    merged = AutoModelForCausalLM.from_pretrained(run_dir / "checkpoint", local_files_only=True)
    before, after = base.state_dict(), merged.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(k.endswith("proj.weight") for k in moved), moved  # only adapted Linears
    tok = AutoTokenizer.from_pretrained(run_dir / "checkpoint", local_files_only=True)
    assert tok.chat_template == CHATML
    x = torch.tensor([encode_prompt(tok, "feed for bob")])  # through the chat template
    with torch.no_grad():
        want = merged(input_ids=x).logits
        adapted = PeftModel.from_pretrained(base, run_dir / "checkpoint" / "adapter")
        torch.testing.assert_close(adapted(input_ids=x).logits, want, atol=1e-5, rtol=1e-5)
