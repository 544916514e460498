"""The learner's memory savers change nothing but memory: the selective log-softmax gives the
full log-softmax's values and gradients, micro-batches accumulate the full batch's gradient for
every algorithm and both aggregations, and gradient checkpointing really recomputes blocks while
giving the same step."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from rewardloop.config import ALGORITHMS, LearnerConfig
from rewardloop.learner.batching import _SelectiveLogSoftmax, collate, completion_logprobs
from rewardloop.learner.trainer import Trainer
from rewardloop.sampling import sample_completions
from rewardloop.trajectory import Trajectory

EOS = PAD = 0
PROMPTS = [[3, 4, 5], [6, 2]]


def tiny_model(dropout: float = 0.0):
    torch.manual_seed(0)
    cfg = GPT2Config(
        n_layer=2,
        n_embd=16,
        n_head=2,
        n_positions=32,
        vocab_size=24,
        bos_token_id=EOS,
        eos_token_id=EOS,
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
    )
    return GPT2LMHeadModel(cfg).eval()


def groups_of(model, group_size=3, max_new=6, seed=0):
    """Groups with completions of different lengths (so token and sequence means differ)."""
    samples = sample_completions(
        model, PROMPTS, group_size, max_new, EOS, PAD, generator=torch.Generator().manual_seed(seed)
    )
    groups = [[] for _ in PROMPTS]
    for i, s in enumerate(samples):
        groups[s.prompt_index].append(
            Trajectory(
                id=f"t{i}",
                group_id=f"g{s.prompt_index}",
                prompt_ids=PROMPTS[s.prompt_index],
                completion_ids=s.completion_ids,
                behavior_logprobs=[lp - 0.05 * (i % 3) for lp in s.logprobs],  # a little stale
                reward=float(i % 4) - 1.0 + 0.1 * len(s.completion_ids),
                policy_version=0,
                group_size=group_size,
            )
        )
    return groups


def test_selective_log_softmax_matches_the_full_one_with_gradients():
    model = tiny_model()
    batch = collate(groups_of(model), PAD)
    assert len({int(n) for n in batch.mask.sum(1)}) > 1, "want ragged completions"
    grads = []
    # the old full log-softmax; chunks over the model's logits; the output layer fused in
    for chunk, fused in ((0, False), (3, False), (3, True)):
        model.zero_grad()
        logprobs, entropy = completion_logprobs(
            model, batch, 0.7, chunk, entropy_grad=True, fused_head=fused
        )
        weights = torch.linspace(-1, 1, logprobs.numel()).reshape(logprobs.shape)
        ((logprobs * weights).sum() + (entropy * weights.flip(1)).sum()).backward()
        grads.append((logprobs, entropy, [p.grad.clone() for p in model.parameters()]))
    lp0, h0, g0 = grads[0]
    for lp1, h1, g1 in grads[1:]:
        torch.testing.assert_close(lp1, lp0, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(h1, h0, atol=1e-5, rtol=1e-5)
        assert bool((lp1[batch.mask == 0] == 0).all()) and bool((h1[batch.mask == 0] == 0).all())
        for a, b in zip(g1, g0, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_selective_log_softmax_is_finite_with_banned_tokens_and_bf16_logits():
    torch.manual_seed(0)
    logits = torch.randn(6, 10)
    logits[:, 3] = float("-inf")  # a banned token: p = 0, contributes 0 (not NaN)
    logits.requires_grad_(True)
    rows, tokens = torch.tensor([0, 2, 5]), torch.tensor([1, 9, 0])
    logprob, entropy = _SelectiveLogSoftmax.apply(logits, rows, tokens, 1.0, 2)
    full = torch.log_softmax(logits.detach()[rows], -1)
    torch.testing.assert_close(logprob, full.gather(-1, tokens[:, None]).squeeze(-1))
    (logprob.sum() + entropy.sum()).backward()
    assert torch.isfinite(entropy).all() and torch.isfinite(logits.grad).all()
    assert bool((logits.grad[:, 3] == 0).all()) and bool((logits.grad[[1, 3, 4]] == 0).all())
    half = logits.detach().to(torch.bfloat16).requires_grad_(True)
    lp_half, _ = _SelectiveLogSoftmax.apply(half, rows, tokens, 1.0, 2)
    lp_half.sum().backward()
    assert lp_half.dtype == torch.float32 and half.grad.dtype == torch.bfloat16
    torch.testing.assert_close(lp_half, logprob.detach(), atol=0.05, rtol=0.0)


def one_step(cfg: LearnerConfig, groups, model=None, steps=1):
    torch.manual_seed(1)
    trainer = Trainer(model or tiny_model(), cfg, pad_id=PAD, temperature=0.9)
    for _ in range(steps):
        metrics = trainer.step(groups)
    assert metrics["skipped"] == 0
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return trainer, metrics, grads


def assert_same_step(a, b):
    (ta, ma, ga), (tb, mb, gb) = a, b
    assert ga.keys() == gb.keys() and ga
    for name in ga:  # Adam's first step is nearly sign(g): the gradients are the sharp check
        torch.testing.assert_close(ga[name], gb[name], atol=1e-6, rtol=1e-4, msg=name)
    sa, sb = ta.model.state_dict(), tb.model.state_dict()
    for name in sa:
        torch.testing.assert_close(sa[name], sb[name], atol=1e-5, rtol=1e-5, msg=name)
    for key in ("loss", "entropy", "kl_behavior", "clip_frac", "is_mean", "kl_ref", "grad_norm"):
        if key in ma:
            assert ma[key] == pytest.approx(mb[key], rel=1e-4, abs=1e-6), key


CASES = [
    (algorithm, aggregation, kl, ent)
    for algorithm in ALGORITHMS
    for aggregation in ("token", "sequence")
    for kl, ent in [((0.1, 0.01) if algorithm in ("grpo", "rloo") else (0.0, 0.0))]
]


@pytest.mark.parametrize(("algorithm", "aggregation", "kl_coef", "entropy_coef"), CASES)
def test_micro_batches_accumulate_the_full_batch_step(
    algorithm, aggregation, kl_coef, entropy_coef
):
    torch.set_num_threads(1)
    groups = groups_of(tiny_model())
    common = dict(
        algorithm=algorithm,
        aggregation=aggregation,
        kl_coef=kl_coef,
        entropy_coef=entropy_coef,
        lr=1e-3,  # Adam turns a ~1e-8 gradient difference on a ~0 gradient into ~lr / 1e3
        ppo_epochs=2,
        is_level="sequence" if algorithm == "reinforce" else "token",
    )
    full = one_step(LearnerConfig(**common), groups)
    micro = one_step(LearnerConfig(micro_batch_size=2, logprob_chunk_rows=4, **common), groups)
    assert_same_step(micro, full)
    if kl_coef:
        assert full[1]["kl_ref"] >= 0 and "kl_ref" in micro[1]


def test_gradient_checkpointing_recomputes_blocks_and_gives_the_same_step():
    torch.set_num_threads(1)
    groups = groups_of(tiny_model())
    cfg = dict(algorithm="grpo", kl_coef=0.1, entropy_coef=0.01, lr=1e-3)

    def counted(checkpointing: bool):
        model = tiny_model(dropout=0.3)  # dropout must be forced off for the match
        calls = []
        # A pre-hook inside the checkpointed forward (the recompute may stop early, before a
        # module's forward returns); grad-enabled calls only: the reference, a deepcopy with the
        # hook, runs under no_grad.
        model.transformer.h[0].ln_1.register_forward_pre_hook(
            lambda *_: calls.append(1) if torch.is_grad_enabled() else None
        )
        step = one_step(LearnerConfig(gradient_checkpointing=checkpointing, **cfg), groups, model)
        return step, len(calls)

    plain, plain_calls = counted(False)
    checked, checked_calls = counted(True)
    # without: 1 forward of the block per step; with: + 1 recomputation in backward
    assert (plain_calls, checked_calls) == (1, 2)
    assert checked[0].model.training and not plain[0].model.training
    assert_same_step(checked, plain)


def test_fused_head_under_bf16_autocast_matches_the_logits_path():
    model = tiny_model()
    batch = collate(groups_of(model), PAD)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused = completion_logprobs(model, batch, 1.0, 4, fused_head=True)
        logits = completion_logprobs(model, batch, 1.0, 4, fused_head=False)
    for a, b in zip(fused, logits, strict=True):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, atol=2e-2, rtol=2e-2)
    fused[0].sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
