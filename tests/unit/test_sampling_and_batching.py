"""Behavior log-probs recorded while sampling (left-padded, KV cache) equal the log-probs the
learner recomputes on right-padded batches: the ratio of a fresh policy is exactly 1."""

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from rewardloop.learner.batching import collate, completion_logits, token_logprobs
from rewardloop.sampling import sample_completions
from rewardloop.trajectory import Trajectory

EOS = PAD = 0


def tiny_model(seed=0):
    torch.manual_seed(seed)
    cfg = GPT2Config(
        n_layer=1,
        n_embd=32,
        n_head=4,
        n_positions=64,
        vocab_size=50,
        bos_token_id=EOS,
        eos_token_id=EOS,
    )
    return GPT2LMHeadModel(cfg).eval()


def test_samples_form_groups_and_stop_at_eos():
    model = tiny_model()
    prompts = [[5, 6, 7], [8], [9, 10, 11, 12, 13]]
    samples = sample_completions(
        model, prompts, 4, 12, EOS, PAD, generator=torch.Generator().manual_seed(1)
    )
    assert [s.prompt_index for s in samples] == [0] * 4 + [1] * 4 + [2] * 4
    for s in samples:
        assert 1 <= len(s.completion_ids) <= 12
        assert len(s.logprobs) == len(s.completion_ids)
        assert EOS not in s.completion_ids[:-1]  # nothing after EOS
        assert all(lp <= 0 for lp in s.logprobs)


def test_learner_recomputes_behavior_logprobs():
    model = tiny_model()
    prompts = [[5, 6, 7], [8], [9, 10, 11, 12, 13]]
    temperature = 0.8
    samples = sample_completions(
        model,
        prompts,
        3,
        10,
        EOS,
        PAD,
        temperature=temperature,
        generator=torch.Generator().manual_seed(2),
    )
    groups = [[] for _ in prompts]
    for i, s in enumerate(samples):
        groups[s.prompt_index].append(
            Trajectory(
                id=str(i),
                group_id=str(s.prompt_index),
                prompt_ids=prompts[s.prompt_index],
                completion_ids=s.completion_ids,
                behavior_logprobs=s.logprobs,
                reward=0.0,
                policy_version=0,
            )
        )
    batch = collate(groups, PAD)
    with torch.no_grad():
        learner = token_logprobs(completion_logits(model, batch, temperature), batch)
    assert torch.allclose(learner * batch.mask, batch.behavior_logprobs * batch.mask, atol=1e-5)
    assert batch.group_index.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert batch.mask.sum().item() == sum(len(s.completion_ids) for s in samples)


def test_sampling_is_reproducible_with_a_seeded_generator():
    model = tiny_model()
    a = sample_completions(
        model, [[3, 4]], 5, 8, EOS, PAD, generator=torch.Generator().manual_seed(3)
    )
    b = sample_completions(
        model, [[3, 4]], 5, 8, EOS, PAD, generator=torch.Generator().manual_seed(3)
    )
    assert [s.completion_ids for s in a] == [s.completion_ids for s in b]
