"""`learner.first_token_entropy_coef`: an entropy bonus on the opening token only.

The first completion token is where a news-feed headline commits to its topic; the bonus there
must be exactly -coef x the mean first-token entropy over completions (hand-worked below), push
that entropy up, and accumulate over micro-batches to the full batch's gradient."""

import math

import pytest
import torch
from test_learner_memory import PAD, assert_same_step, groups_of, one_step, tiny_model

from rewardloop.config import LearnerConfig
from rewardloop.errors import ConfigError
from rewardloop.learner.batching import collate, completion_logprobs
from rewardloop.learner.losses import first_token_mean


def test_first_token_mean_by_hand():
    values = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    mask = torch.tensor([[1.0, 1.0], [0.0, 0.0], [1.0, 0.0]])  # row 1 has no completion token
    assert float(first_token_mean(values, mask)) == pytest.approx((1.0 + 5.0) / 2)
    assert float(first_token_mean(values, torch.zeros_like(mask))) == 0.0
    assert float(first_token_mean(torch.zeros(2, 0), torch.zeros(2, 0))) == 0.0


def test_the_bonus_is_minus_coef_times_the_mean_first_token_entropy():
    """Equal rewards give rloo advantages of exactly 0, so the step's gradient is the bonus's
    alone: -c x mean_i H(softmax(logits_i at the first completion position)), computed here
    straight from the model's logits."""
    torch.set_num_threads(1)
    coef = 0.05
    groups = groups_of(tiny_model())
    for g in groups:
        for t in g:
            t.reward = 0.5
    trainer, metrics, grads = one_step(
        LearnerConfig(algorithm="rloo", first_token_entropy_coef=coef, grad_clip=0.0), groups
    )
    model = tiny_model()
    batch = collate(groups, PAD)
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    first = logits[torch.arange(logits.shape[0]), batch.completion_index[:, 0]] / 0.9
    p = torch.softmax(first, -1)
    h = -(p * torch.log(p)).sum(-1).mean()  # every row here has a first token
    (-coef * h).backward()
    h = float(h.detach())
    assert metrics["entropy_first"] == pytest.approx(h, rel=1e-5)
    assert metrics["loss"] == pytest.approx(-coef * h, rel=1e-5)
    assert 0 < h < math.log(24)
    for name, p_ in model.named_parameters():
        torch.testing.assert_close(grads[name], p_.grad, atol=1e-7, rtol=1e-4, msg=name)


def test_the_bonus_raises_the_first_token_entropy_and_micro_batches_match():
    torch.set_num_threads(1)
    groups = groups_of(tiny_model())
    batch = collate(groups, PAD)
    cfg = dict(algorithm="rloo", first_token_entropy_coef=1.0, lr=1e-2)

    def entropy_after(**kw) -> tuple[float, float]:
        trainer, metrics, _ = one_step(LearnerConfig(**kw), groups, steps=3)
        with torch.no_grad():
            _, h = completion_logprobs(trainer.model, batch, 0.9)
        return float(first_token_mean(h, batch.mask)), metrics["entropy_first"]

    with_bonus, _ = entropy_after(**cfg)
    without, _ = entropy_after(algorithm="rloo", lr=1e-2)
    # the same rewards and steps, only the bonus differs (near-uniform start: ln 24 = 3.178)
    assert with_bonus - without > 1e-4
    full = one_step(LearnerConfig(**cfg), groups)
    micro = one_step(LearnerConfig(micro_batch_size=2, logprob_chunk_rows=4, **cfg), groups)
    assert_same_step(micro, full)
    assert micro[1]["entropy_first"] == pytest.approx(full[1]["entropy_first"], rel=1e-5)


def test_a_negative_coefficient_is_refused():
    with pytest.raises(ConfigError, match="first_token_entropy_coef"):
        LearnerConfig(first_token_entropy_coef=-0.1)
