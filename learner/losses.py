"""Policy losses over completion tokens, as pure functions of `[B, T]` tensors.

Conventions shared by every function:
- `logprobs`, `old_logprobs`, `ref_logprobs`, ... are `[B, T]` log pi(token) over completion
  tokens; `mask` is `[B, T]` bool or float, nonzero = a real token, zero = padding (or any token
  that must not be trained on). Values at masked positions are never read: they are replaced by
  0 (in log space, so ratios there are exactly 1) *before* any exp, so a -inf or NaN in padding
  can neither overflow nor leak NaN into the loss or its gradient.
- Advantages and importance weights are constants of the loss: they are detached here.
- A loss is a scalar to *minimise*; `stats` are Python floats for logging (one device sync).
- Aggregation (`aggregate`) is a separate, named choice, because it changes what the loss means.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from rewardloop.errors import InvalidInput

__all__ = [
    "aggregate",
    "behavior_mismatch",
    "bounded_log_ratio",
    "entropy_from_logits",
    "first_token_mean",
    "kl_penalty",
    "policy_gradient_loss",
    "ppo_clip_loss",
    "sequence_log_ratio",
    "truncated_completions",
    "truncated_importance_weights",
]

AGGREGATIONS = ("token", "sequence", "constant")
KL_ESTIMATORS = ("k1", "k2", "k3")
IS_LEVELS = ("token", "sequence")


def _check_bt(name: str, x: Tensor, mask: Tensor) -> None:
    if x.shape != mask.shape or x.dim() != 2:
        raise InvalidInput(name, f"expected [B, T] = {tuple(mask.shape)}, got {tuple(x.shape)}")


def _per_token(name: str, x: Tensor, mask: Tensor) -> Tensor:
    """Accept `[B]` (one value per sequence, broadcast over its tokens) or `[B, T]`."""
    if x.dim() == 1 and x.shape[0] == mask.shape[0]:
        return x.unsqueeze(1)
    _check_bt(name, x, mask)
    return x


def _masked_mean(x: Tensor, real: Tensor) -> Tensor:
    return torch.where(real, x, 0.0).sum() / real.sum().clamp(min=1)


def _floats(**values: Tensor) -> dict[str, float]:
    """Scalar tensors -> Python floats with one device sync."""
    numbers = torch.stack([v.detach().float() for v in values.values()]).tolist()
    return dict(zip(values, numbers, strict=True))


def first_token_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of `values[:, 0]` over the rows whose first completion token is real (0 if none).

    For `learner.first_token_entropy_coef`: the opening token is where a completion commits to
    what it is about (the news feed's topic), so an entropy bonus there keeps that choice open
    without paying for entropy in the wording, as a bonus on every token does.
    """
    _check_bt("values", values, mask)
    if values.shape[1] == 0:
        return values.sum()  # no completion token at all: 0, graph kept
    first = mask[:, 0].bool()
    return torch.where(first, values[:, 0], 0.0).sum() / first.sum().clamp(min=1)


def aggregate(values: Tensor, mask: Tensor, mode: str = "token", norm_tokens: int = 0) -> Tensor:
    """Reduce per-token values `[B, T]` to a scalar.

    "token":    sum_bt(v * m) / sum_bt(m). Every real token in the batch counts equally, so a
                long completion gets proportionally more say and a long bad answer is not
                diluted by its length (DAPO's token-level loss); the default.
    "sequence": mean over non-empty rows b of sum_t(v * m) / sum_t(m). Every completion counts
                equally whatever its length (the original GRPO); rows with no real token are
                left out of the mean rather than counted as 0.
    "constant": sum_bt(v * m) / (B * norm_tokens), a normaliser that depends on neither the
                lengths nor the content (Dr. GRPO: norm_tokens = the generation budget,
                rollout.max_new_tokens; 0 = the batch's padded width T). Neither a long nor a
                short completion has its per-token gradient scaled by its own length.
    With no real token at all the result is 0 (never NaN), and the graph stays connected.
    The token and sequence modes agree when every row has the same number of real tokens.
    """
    _check_bt("values", values, mask)
    real = mask.bool()
    masked = torch.where(real, values, 0.0)
    if mode == "token":
        return masked.sum() / real.sum().clamp(min=1)
    if mode == "sequence":
        lengths = real.sum(dim=1)
        row_means = masked.sum(dim=1) / lengths.clamp(min=1)
        return row_means.sum() / (lengths > 0).sum().clamp(min=1)
    if mode == "constant":
        if norm_tokens < 0:
            raise InvalidInput("norm_tokens", f"must be >= 0, got {norm_tokens}")
        return masked.sum() / max(values.shape[0] * (norm_tokens or values.shape[1]), 1)
    raise InvalidInput("aggregation", f"unknown mode {mode!r}; use one of {AGGREGATIONS}")


def bounded_log_ratio(
    logprobs: Tensor, base_logprobs: Tensor, mask: Tensor, bound: float | None
) -> Tensor:
    """log(pi / base) per real token (0 at masked positions), clamped to [-bound, bound].

    One extreme token (a behavior log-prob of -800 from a near-banned token, a learner/sampler
    mismatch in bf16) would otherwise give a ratio of exp(800) = inf, and inf * 0 = NaN in the
    clipped branch's backward turns the whole step into NaN. Inside the bound nothing changes;
    outside it the token's ratio is exp(+-bound), with no gradient through the clamp (such a
    token is far outside any clip range, where PPO passes no gradient either). None = no bound.
    """
    log_ratio = torch.where(mask.bool(), logprobs - base_logprobs, 0.0)
    if bound is None:
        return log_ratio
    if not bound > 0:
        raise InvalidInput("log_ratio_bound", f"must be > 0, got {bound}")
    return log_ratio.clamp(-bound, bound)


def sequence_log_ratio(log_ratio: Tensor, mask: Tensor) -> Tensor:
    """GSPO's sequence ratio in log space: mean over a row's real tokens of log(pi / old),
    broadcast back to `[B, T]` (0 on empty rows). exp of it is the completion's likelihood
    ratio normalised by its length, so every token of a completion shares one ratio and one
    clip decision, and long completions do not get exponentially larger ratios."""
    real = mask.bool()
    per_row = torch.where(real, log_ratio, 0.0).sum(1, keepdim=True)
    return (per_row / real.sum(1, keepdim=True).clamp(min=1)).expand_as(log_ratio)


def ppo_clip_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_eps: float = 0.2,
    weights: Tensor | None = None,
    aggregation: str = "token",
    clip_eps_high: float | None = None,
    dual_clip: float = 0.0,
    level: str = "token",
    log_ratio_bound: float | None = 20.0,
    norm_tokens: int = 0,
) -> tuple[Tensor, dict[str, float]]:
    """PPO-clip: loss = -aggregate( w * min(rho * A, clip(rho, 1 - eps, 1 + eps_high) * A) ).

    rho = exp(logprobs - old_logprobs), old = the behavior policy's log-probs (detached), its
    log clamped to +-`log_ratio_bound` (`bounded_log_ratio`). `advantages` and `weights` are
    `[B]` (per sequence) or `[B, T]`; `weights` are truncated importance weights from
    `truncated_importance_weights` (default 1). `clip_eps_high` (default = clip_eps) lets the
    upper bound differ (DAPO's clip-higher). The gradient is zero on a token whose ratio is
    clipped on the side that matters: rho > 1 + eps with A > 0, or rho < 1 - eps with A < 0.

    `dual_clip` = c > 1 (0 = off) bounds the objective of negative advantages from below:
    for A < 0 it is max(min(...), c * A) (Ye et al. 2020, as verl's clip_ratio_c), so a token
    whose ratio ran past c (a stale sample the policy now loves) cannot push an unbounded
    negative step; its gradient is then zero. `level="sequence"` uses one ratio per completion,
    exp(mean_t log rho) (GSPO, `sequence_log_ratio`), clipped as a whole.

    stats: clip_frac (fraction of real tokens with that zero gradient), dual_clip_frac,
    ratio_mean, ratio_max (over real tokens) and approx_kl = mean((rho - 1) - log rho),
    Schulman's k3 estimate of KL(old || new), from the token ratios.
    """
    _check_bt("logprobs", logprobs, mask)
    _check_bt("old_logprobs", old_logprobs, mask)
    if level not in IS_LEVELS:
        raise InvalidInput("level", f"unknown level {level!r}; use one of {IS_LEVELS}")
    if dual_clip and not dual_clip > 1:
        raise InvalidInput("dual_clip", f"must be > 1 (or 0 = off), got {dual_clip}")
    real = mask.bool()
    adv = _per_token("advantages", advantages, mask).detach()
    high = clip_eps if clip_eps_high is None else clip_eps_high

    token_log_ratio = bounded_log_ratio(logprobs, old_logprobs.detach(), mask, log_ratio_bound)
    log_ratio = (
        sequence_log_ratio(token_log_ratio, mask) if level == "sequence" else token_log_ratio
    )
    ratio = log_ratio.exp()
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - clip_eps, 1.0 + high) * adv
    objective = torch.minimum(unclipped, clipped)
    dual = torch.zeros_like(real)
    if dual_clip:
        dual = (adv < 0) & (objective < dual_clip * adv)
        objective = torch.where(dual, dual_clip * adv, objective)
    if weights is not None:
        objective = objective * _per_token("weights", weights, mask).detach()
    loss = -aggregate(objective, mask, aggregation, norm_tokens)

    with torch.no_grad():
        zero_grad = ((ratio > 1.0 + high) & (adv > 0)) | ((ratio < 1.0 - clip_eps) & (adv < 0))
        token_ratio = token_log_ratio.exp()
        stats = _floats(
            clip_frac=_masked_mean((zero_grad | dual).float(), real),
            dual_clip_frac=_masked_mean(dual.float(), real),
            ratio_mean=_masked_mean(ratio, real),
            ratio_max=torch.where(real, ratio, 0.0).max() if ratio.numel() else ratio.sum(),
            approx_kl=_masked_mean((token_ratio - 1.0) - token_log_ratio, real),
        )
    return loss, stats


def policy_gradient_loss(
    logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    weights: Tensor | None = None,
    aggregation: str = "token",
    norm_tokens: int = 0,
) -> tuple[Tensor, dict[str, float]]:
    """Plain REINFORCE: loss = -aggregate(w * A * logprobs); grad = -E[w * A * grad log pi].

    Right for strictly on-policy data; for stale data pass truncated importance weights.
    stats: logprob_mean and advantage_mean over real tokens.
    """
    _check_bt("logprobs", logprobs, mask)
    real = mask.bool()
    adv = _per_token("advantages", advantages, mask).detach()
    objective = adv * torch.where(real, logprobs, 0.0)
    if weights is not None:
        objective = objective * _per_token("weights", weights, mask).detach()
    loss = -aggregate(objective, mask, aggregation, norm_tokens)
    with torch.no_grad():
        stats = _floats(
            logprob_mean=_masked_mean(logprobs, real),
            advantage_mean=_masked_mean(adv.expand_as(logprobs), real),
        )
    return loss, stats


def truncated_importance_weights(
    target_logprobs: Tensor,
    behavior_logprobs: Tensor,
    mask: Tensor,
    cap: float,
    level: str = "token",
) -> tuple[Tensor, dict[str, float]]:
    """Truncated importance sampling: w = min(pi_target / pi_behavior, cap), detached.

    level "token":    w_bt = min(exp(target_bt - behavior_bt), cap).
    level "sequence": w_b = min(exp(sum_t m_bt * (target_bt - behavior_bt)), cap), the whole
                      completion's likelihood ratio, broadcast to the row's tokens.
    Computed as exp(min(log w, log cap)), so it never overflows. Masked positions get weight 0:
    a padding token carries no weight, and a sum of weights counts only real tokens.
    stats (over the units weighted: real tokens, or non-empty rows): is_mean (mean truncated
    weight) and is_truncated_frac (fraction where the cap bit).
    """
    _check_bt("target_logprobs", target_logprobs, mask)
    _check_bt("behavior_logprobs", behavior_logprobs, mask)
    if not cap > 0:
        raise InvalidInput("cap", f"must be > 0, got {cap}")
    if level not in IS_LEVELS:
        raise InvalidInput("level", f"unknown level {level!r}; use one of {IS_LEVELS}")
    real = mask.bool()
    log_cap = math.log(cap)
    with torch.no_grad():
        log_w = torch.where(real, target_logprobs - behavior_logprobs, 0.0)
        if level == "sequence":
            log_w = log_w.sum(dim=1, keepdim=True)  # [B, 1]
            units = real.any(dim=1, keepdim=True)
        else:
            units = real
        w = log_w.clamp(max=log_cap).exp()
        stats = _floats(
            is_mean=_masked_mean(w, units),
            is_truncated_frac=_masked_mean((log_w > log_cap).float(), units),
        )
        weights = torch.where(real, w.expand_as(real), 0.0)
    return weights, stats


def kl_penalty(
    logprobs: Tensor,
    ref_logprobs: Tensor,
    mask: Tensor,
    estimator: str = "k3",
    aggregation: str = "token",
    log_ratio_bound: float | None = 20.0,
    norm_tokens: int = 0,
) -> Tensor:
    """Estimate of KL(pi || ref) from tokens sampled from pi, to add as beta * kl to the loss.

    With log r = ref - logprobs (r = ref/pi), Schulman's estimators are
      k1 = -log r = logprobs - ref                       (unbiased, high variance, can be < 0)
      k2 = (log r)^2 / 2                                  (biased, low variance, >= 0)
      k3 = (r - 1) - log r = exp(ref - lp) - (ref - lp) - 1  (unbiased, low variance, >= 0)
    k3 is the default (as in GRPO). The reference log-probs are detached; log r is clamped to
    +-`log_ratio_bound` (`bounded_log_ratio`), so k3's exp cannot overflow.
    """
    _check_bt("logprobs", logprobs, mask)
    _check_bt("ref_logprobs", ref_logprobs, mask)
    log_r = -bounded_log_ratio(logprobs, ref_logprobs.detach(), mask, log_ratio_bound)
    if estimator == "k1":
        per_token = -log_r
    elif estimator == "k2":
        per_token = 0.5 * log_r**2
    elif estimator == "k3":
        per_token = log_r.exp() - log_r - 1.0
    else:
        raise InvalidInput("estimator", f"unknown estimator {estimator!r}; use {KL_ESTIMATORS}")
    return aggregate(per_token, mask, aggregation, norm_tokens)


def behavior_mismatch(
    learner_logprobs: Tensor, behavior_logprobs: Tensor, mask: Tensor
) -> dict[str, float]:
    """How far the learner's view of the sampled tokens is from the sampler's, for logging.

    Tokens were sampled from the behavior policy b, so with r = pi_learner / b the k3 estimate of
    KL(b || learner) is mean((r - 1) - log r) over real tokens. logprob_abs_diff is
    mean |log pi_learner - log b|. Both are 0 when the two agree exactly.
    """
    _check_bt("learner_logprobs", learner_logprobs, mask)
    _check_bt("behavior_logprobs", behavior_logprobs, mask)
    real = mask.bool()
    with torch.no_grad():
        log_r = torch.where(real, learner_logprobs - behavior_logprobs, 0.0).float()
        return _floats(
            kl_behavior=_masked_mean(log_r.exp() - 1.0 - log_r, real),
            logprob_abs_diff=_masked_mean(log_r.abs(), real),
        )


def entropy_from_logits(logits: Tensor, mask: Tensor, chunk_tokens: int = 1024) -> Tensor:
    """Masked mean over real tokens of H = -sum_v p_v log p_v, p = softmax(logits).

    Stable: log p = log_softmax(logits) (max-subtracted), -inf logits (banned tokens) are clamped
    to the dtype's finite minimum so that 0 * log 0 contributes 0, not NaN. Tokens are processed
    `chunk_tokens` at a time in float32, so a large vocabulary neither loses precision in bf16
    nor allocates a second full-size [B, T, V] softmax. Differentiable (usable as a bonus).
    """
    if logits.dim() != 3 or logits.shape[:2] != mask.shape:
        raise InvalidInput("logits", f"expected [B, T, V] with [B, T] = {tuple(mask.shape)}")
    flat = logits.reshape(-1, logits.shape[-1])
    parts = []
    for start in range(0, flat.shape[0], chunk_tokens):
        z = flat[start : start + chunk_tokens].float()
        logp = torch.log_softmax(z.clamp(min=torch.finfo(z.dtype).min), dim=-1)
        parts.append(-(logp.exp() * logp).sum(dim=-1))
    per_token = torch.cat(parts).reshape(mask.shape) if parts else flat.new_zeros(mask.shape)
    return aggregate(per_token, mask, "token")


def truncated_completions(completion_ids: Tensor, mask: Tensor, eos_id: int) -> Tensor:
    """`[B]` bool: rows with real tokens whose last real token is not eos, i.e. completions
    that rollout.max_new_tokens cut off (the sampler stops a row at eos and nowhere else)."""
    _check_bt("completion_ids", completion_ids, mask)
    real = mask.bool()
    lengths = real.sum(1)
    last = completion_ids.gather(1, (lengths - 1).clamp(min=0)[:, None]).squeeze(1)
    return (lengths > 0) & (last != eos_id)


def mask_truncated(mask: Tensor, completion_ids: Tensor, eos_id: int) -> tuple[Tensor, int]:
    """(mask with every truncated row zeroed, how many rows that was): DAPO's overlong
    filtering. A cut-off completion's reward judges an answer that was never finished; zeroing
    its tokens keeps that reward out of the gradient, while its advantage still came from
    (and still shapes) its group's baseline."""
    cut = truncated_completions(completion_ids, mask, eos_id)
    return torch.where(cut[:, None], torch.zeros_like(mask), mask), int(cut.sum())
