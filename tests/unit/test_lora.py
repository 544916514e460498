"""LoRA (model.lora_r > 0): the learner trains only the adapter and learns, the reference for
the KL is the base with the adapter off, a version carries only adapter bytes that a worker
applies onto its own base, and the checkpoint loads merged (plain transformers) and as an
adapter (PeftModel.from_pretrained)."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

from rewardloop import lora
from rewardloop.config import LearnerConfig, ModelConfig
from rewardloop.errors import ConfigError
from rewardloop.learner.checkpoint import save_checkpoint
from rewardloop.learner.trainer import Trainer
from rewardloop.sampling import sample_completions
from rewardloop.trajectory import Trajectory

EOS = PAD = 0
GOOD = 7
PROMPT = [3, 4, 5]


@pytest.fixture()
def base_dir(tmp_path):
    torch.manual_seed(0)
    cfg = GPT2Config(
        n_layer=2, n_embd=32, n_head=4, n_positions=32, vocab_size=16,
        bos_token_id=EOS, eos_token_id=EOS, pad_token_id=PAD,
        # wider than GPT-2's 0.02: with frozen embeddings and layer norms an adapter can move
        # the logits only as far as |wte| allows, and at 0.02 that is p(GOOD) ~ 0.11 at most
        initializer_range=0.2,
    )  # fmt: skip
    GPT2LMHeadModel(cfg).save_pretrained(tmp_path / "base")
    return tmp_path / "base"


def wrapped(base_dir, r=4, modules="all-linear", seed=0, embeddings=False):
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    return lora.wrap(model, r, 16.0, modules, embeddings).eval()


def p_good(model) -> float:
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([PROMPT])).logits[0, -1]
    return torch.softmax(logits, -1)[GOOD].item()


def rollout(model, version, seed, n_groups=4, group_size=8):
    samples = sample_completions(
        model, [PROMPT] * n_groups, group_size, 3, EOS, PAD,
        generator=torch.Generator().manual_seed(seed),
    )  # fmt: skip
    groups = [[] for _ in range(n_groups)]
    for i, s in enumerate(samples):
        groups[s.prompt_index].append(
            Trajectory(
                id=f"{seed}-{i}",
                group_id=f"{seed}-{s.prompt_index}",
                prompt_ids=PROMPT,
                completion_ids=s.completion_ids,
                behavior_logprobs=s.logprobs,
                reward=1.0 if s.completion_ids[0] == GOOD else 0.0,
                policy_version=version,
                group_size=group_size,
            )
        )
    return groups


def test_lora_learns_by_changing_only_the_adapter_and_its_kl_reference_is_the_base(base_dir):
    torch.set_num_threads(1)
    model = wrapped(base_dir)
    names = dict(model.named_parameters())
    before = {k: v.detach().clone() for k, v in names.items()}
    start = p_good(model)
    # lr 2e-2: at 5e-2, once every sample is GOOD (zero advantages) Adam's full-size steps on
    # the KL alone overshot the base and threw p(GOOD) to ~0 in 3 of 6 rollout streams
    trainer = Trainer(model, LearnerConfig(lr=2e-2, kl_coef=0.05), pad_id=PAD)
    assert trainer.reference is None  # no frozen copy of the model
    assert len(trainer.optimizer.param_groups[0]["params"]) == sum(".lora_" in k for k in names)
    kls = []
    for step in range(25):
        metrics = trainer.step(rollout(model, trainer.version, seed=step))
        assert metrics["skipped"] == 0
        kls.append(metrics["kl_ref"])
    changed = {k for k, v in names.items() if not torch.equal(before[k], v.detach())}
    assert changed and all(".lora_" in k for k in changed), changed
    assert any("lora_A" in k for k in changed) and any("lora_B" in k for k in changed)
    end = p_good(model)
    assert end > max(0.5, 3 * start), (start, end)
    # lora_B starts at 0: the first step's policy is the base exactly, so KL(pi || base) = 0
    assert kls[0] == pytest.approx(0.0, abs=1e-7) and kls[-1] > 1e-4
    with lora.reference_off(model):  # the base really is untouched
        assert p_good(model) == pytest.approx(start, abs=1e-6)


@pytest.mark.parametrize("embeddings", [False, True])
def test_a_version_is_the_adapter_only_and_a_worker_applies_it_onto_its_base(base_dir, embeddings):
    learner = wrapped(base_dir, seed=0, embeddings=embeddings)
    trainer = Trainer(learner, LearnerConfig(lr=5e-2), pad_id=PAD)
    for step in range(3):
        trainer.step(rollout(learner, trainer.version, seed=step))
    state = trainer.publish_state()
    # with embeddings the tied matrix goes once, under its input name
    extra = {"base_model.model.transformer.wte.weight"} if embeddings else set()
    assert state and {k for k in state if ".lora_" not in k} == extra
    adapter, full = lora.state_bytes(state), lora.full_weight_bytes(learner)
    plain = AutoModelForCausalLM.from_pretrained(base_dir)
    assert full == lora.state_bytes(plain.state_dict())  # what a full version would carry
    assert adapter < full / 2, (adapter, full)
    worker = wrapped(base_dir, seed=123, embeddings=embeddings)  # own lora_A: differs until loaded
    x = torch.tensor([PROMPT + [GOOD, 9]])
    with torch.no_grad():
        want = learner(input_ids=x).logits
        assert not torch.allclose(worker(input_ids=x).logits, want, atol=1e-4)
        lora.load_weights(worker, state)
        assert torch.equal(worker(input_ids=x).logits, want)
    with pytest.raises(ValueError, match="adapter keys"):
        lora.load_weights(worker, {"base_model.model.nothing.lora_A.weight": torch.zeros(1)})
    with pytest.raises(ConfigError, match="model.lora_r"):  # a worker without the adapter
        lora.load_weights(AutoModelForCausalLM.from_pretrained(base_dir), state)
    full_state = trainer.state_dict_cpu()  # the full path (resume) still loads strictly
    lora.load_weights(wrapped(base_dir, seed=5, embeddings=embeddings), full_state)


@pytest.mark.parametrize("embeddings", [False, True])  # True: the tied embedding trained too
def test_the_checkpoint_loads_merged_with_transformers_and_as_an_adapter_with_peft(
    base_dir, tmp_path, embeddings
):
    model = wrapped(base_dir, embeddings=embeddings)
    trainer = Trainer(model, LearnerConfig(lr=5e-2), pad_id=PAD)
    for step in range(3):
        trainer.step(rollout(model, trainer.version, seed=step))
    out = save_checkpoint(tmp_path / "ckpt", model, None, trainer.trainer_state(), {"v": 3})
    x = torch.tensor([PROMPT + [GOOD, 9, 2]])
    with torch.no_grad():
        want = model(input_ids=x).logits
        merged = AutoModelForCausalLM.from_pretrained(out)
        assert not any(".lora_" in k for k in merged.state_dict())
        torch.testing.assert_close(merged(input_ids=x).logits, want, atol=1e-5, rtol=1e-5)
        base = AutoModelForCausalLM.from_pretrained(base_dir)
        assert not torch.allclose(base(input_ids=x).logits, want, atol=1e-4)  # it did train
        adapter = PeftModel.from_pretrained(base, out / lora.ADAPTER_DIR)
        torch.testing.assert_close(adapter(input_ids=x).logits, want, atol=1e-6, rtol=1e-6)
    config = json.loads((out / lora.ADAPTER_DIR / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["base_model_name_or_path"] == str(base_dir)


def test_target_modules_auto_and_lists_and_bad_names(base_dir):
    def adapted(model) -> set[str]:
        return {
            k.split(".lora_A")[0].split(".")[-1]
            for k, _ in model.named_parameters()
            if ".lora_A" in k
        }

    assert adapted(wrapped(base_dir, modules="auto")) == {"c_attn"}  # peft's GPT-2 default
    assert adapted(wrapped(base_dir, modules="c_fc, c_proj")) == {"c_fc", "c_proj"}
    assert adapted(wrapped(base_dir)) == {"c_attn", "c_proj", "c_fc"}  # all-linear
    with pytest.raises(ConfigError, match="lora_target_modules"):
        wrapped(base_dir, modules="q_proj")  # not in a GPT-2
    assert lora.wrap(GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=2)), 0, 1, "auto")
    for key, value in [("lora_r", -1), ("lora_alpha", 0.0), ("lora_target_modules", "a;b")]:
        with pytest.raises(ConfigError, match=f"model.{key}"):
            ModelConfig(**{key: value})
    ModelConfig(lora_r=8, lora_target_modules="q_proj,v_proj")
