"""LoRA learns on the tiny default news-feed model (examples/lora.yaml's settings): a rank-8
adapter on every linear layer plus the tied token embedding, trained by the real Trainer on
completions the model samples, raises one reader's like rate; only the adapter and the
embedding's trained copy change, the base stays as loaded, and a worker that applies the
published version computes the same log-probs as the learner."""

from __future__ import annotations

import pytest
import torch

from rewardloop import lora
from rewardloop.config import LearnerConfig, ModelConfig
from rewardloop.feedback.sim.personas import PersonaReward
from rewardloop.learner.trainer import Trainer
from rewardloop.modeling import load_policy
from rewardloop.sampling import sample_completions
from rewardloop.scoring import ScoreRequest
from rewardloop.tasks.newsfeed.prompts import train_prompts
from rewardloop.trajectory import Trajectory

READER, GROUPS, GROUP_SIZE, NEW_TOKENS, STEPS = "alice", 4, 8, 24, 30


def like_rate(model, tok, prompts, reward, seed, group_size=GROUP_SIZE):
    """(noise-free like probability of each sample, prompt ids, samples): a group per prompt."""
    ids = [tok(p.text, add_special_tokens=False)["input_ids"] for p in prompts]
    samples = sample_completions(
        model, ids, group_size, NEW_TOKENS, tok.eos_token_id, tok.pad_token_id,
        generator=torch.Generator().manual_seed(seed),
    )  # fmt: skip
    texts = [tok.decode([t for t in s.completion_ids if t != tok.eos_token_id]) for s in samples]
    probs = reward.expected([ScoreRequest(str(i), "", t, READER) for i, t in enumerate(texts)])
    return probs, ids, samples


@pytest.mark.slow  # 30 steps of sampling and training on the default model: over a minute
def test_lora_with_embeddings_raises_the_default_models_reward(model_cache):
    torch.set_num_threads(2)
    torch.manual_seed(0)
    cfg = ModelConfig(cache_dir=model_cache, lora_r=8, lora_embeddings=True)
    model, tok, _ = load_policy(cfg)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    trainer = Trainer(model, LearnerConfig(lr=1e-3, warmup_steps=0), pad_id=tok.pad_token_id)
    reward = PersonaReward()
    mine = [p for p in train_prompts() if p.reader == READER]
    start = sum(like_rate(model, tok, mine, reward, seed=1, group_size=4)[0]) / (4 * len(mine))
    for step in range(STEPS):
        prompts = [mine[(step * GROUPS + g) % len(mine)] for g in range(GROUPS)]
        probs, ids, samples = like_rate(model, tok, prompts, reward, seed=100 + step)
        groups = [[] for _ in prompts]
        for i, (s, p) in enumerate(zip(samples, probs, strict=True)):
            groups[s.prompt_index].append(
                Trajectory(
                    id=f"{step}-{i}", group_id=f"{step}-{s.prompt_index}",
                    prompt_ids=ids[s.prompt_index], completion_ids=s.completion_ids,
                    behavior_logprobs=s.logprobs, reward=p, policy_version=trainer.version,
                    group_size=GROUP_SIZE,
                )
            )  # fmt: skip
        assert trainer.step(groups)["skipped"] == 0
    end = sum(like_rate(model, tok, mine, reward, seed=1, group_size=4)[0]) / (4 * len(mine))
    assert end > max(0.6, start + 0.2), (start, end)

    changed = {k for k, v in model.named_parameters() if not torch.equal(before[k], v.detach())}
    assert any(".lora_A" in k for k in changed) and any(".lora_B" in k for k in changed)
    assert any(".modules_to_save." in k for k in changed)  # the embedding's trained copy
    assert all(".lora_" in k or ".modules_to_save." in k for k in changed), changed
    base = [k for k in before if ".base_layer." in k or ".original_module." in k]
    assert base and not changed & set(base)

    worker, _, _ = load_policy(ModelConfig(cache_dir=model_cache, lora_r=8, lora_embeddings=True))
    state = trainer.publish_state()
    assert lora.state_bytes(state) < lora.full_weight_bytes(model) / 2
    lora.load_weights(worker, state)
    x = torch.tensor([ids[0] + samples[0].completion_ids])
    with torch.no_grad():
        assert torch.equal(worker(input_ids=x).logits, model(input_ids=x).logits)
