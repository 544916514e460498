"""Advantage estimators: how much better one completion did than its siblings or than usual.

Every function here is a pure function over tensors (the one exception is `RunningMean`, the
state of the REINFORCE baseline). Rewards arrive as a flat vector `[N]`, one per trajectory, with
`group_index[N]` naming the prompt group each trajectory was sampled in; group ids are arbitrary
integers (the learner's group ids, not 0..G-1), so we renumber them with `torch.unique` and do
all group statistics with `index_add_` / `scatter_reduce_`, never a Python loop over groups.

Group statistics are computed in float64 and cast back: rewards are a few hundred numbers, and
float32 round-off in a group mean would otherwise turn a group of equal rewards into tiny
non-zero advantages that `std + eps` then blows up. For the same reason a group whose rewards are
exactly equal (including every group of size 1) gets advantage exactly 0: it carries no signal.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rewardloop.errors import InvalidInput

__all__ = [
    "RunningMean",
    "group_relative",
    "group_scaled",
    "leave_one_out",
    "reinforce_baseline",
    "scaled_baseline",
    "token_returns",
    "varied_groups",
    "whiten",
]


def _check_rewards(rewards: Tensor, group_index: Tensor | None = None) -> None:
    if rewards.dim() != 1:
        raise InvalidInput(
            "rewards", f"expected a 1-D tensor [N], got shape {tuple(rewards.shape)}"
        )
    if not bool(torch.isfinite(rewards).all()):
        raise InvalidInput("rewards", "contains NaN or inf")
    if group_index is not None and group_index.shape != rewards.shape:
        raise InvalidInput(
            "group_index",
            f"shape {tuple(group_index.shape)} does not match rewards {tuple(rewards.shape)}",
        )


def _group_stats(rewards: Tensor, group_index: Tensor) -> tuple[Tensor, ...]:
    """Per-trajectory (r, group size n, group sum S, group-is-constant, dense group id gid).

    Each output is `[N]`: the statistic of the trajectory's own group, gathered back; r, n and S
    are float64.
    """
    r = rewards.detach().to(torch.float64)
    ids, gid = torch.unique(group_index, return_inverse=True)  # arbitrary ids -> 0..G-1
    per_group = torch.zeros(ids.numel(), dtype=torch.float64, device=r.device)
    count = per_group.index_add(0, gid, torch.ones_like(r))
    total = per_group.index_add(0, gid, r)
    gmax = per_group.scatter_reduce(0, gid, r, reduce="amax", include_self=False)
    gmin = per_group.scatter_reduce(0, gid, r, reduce="amin", include_self=False)
    return r, count[gid], total[gid], (gmax == gmin)[gid], gid


def _group_sum(x: Tensor, gid: Tensor) -> Tensor:
    """sum_{j in group(i)} x_j, gathered back to [N]."""
    return torch.zeros_like(x).index_add(0, gid, x)[gid]


def group_relative(
    rewards: Tensor, group_index: Tensor, scale_std: bool = True, eps: float = 1e-6
) -> Tensor:
    """GRPO advantage: A_i = (r_i - mean_g) / (std_g + eps), g = the group of i.

    std_g is the population std, sqrt(mean_g((r - mean_g)^2)) (unbiased=False): it is defined for
    a group of one, and it makes a two-member group {0, 1} map to exactly {-1, +1} (up to eps).
    With `scale_std=False` this is Dr. GRPO's A_i = r_i - mean_g. Groups of size 1 and groups of
    equal rewards give A = 0 exactly.
    """
    _check_rewards(rewards, group_index)
    r, n, total, constant, gid = _group_stats(rewards, group_index)
    centered = r - total / n
    adv = centered
    if scale_std:
        std = (_group_sum(centered * centered, gid) / n).sqrt()
        adv = centered / (std + eps)
        constant = constant | (std == 0)  # spread below float64 resolution: no signal either
    adv = torch.where(constant, torch.zeros_like(adv), adv)
    return adv.to(_float_dtype(rewards))


def leave_one_out(
    rewards: Tensor, group_index: Tensor, scale_std: bool = False, eps: float = 1e-6
) -> Tensor:
    """RLOO advantage: A_i = r_i - (S_g - r_i) / (n_g - 1), the mean of the *other* members.

    Equivalently n/(n-1) * (r_i - mean_g). An unbiased baseline because it does not depend on
    sample i. Groups of size 1 (no other member) and groups of equal rewards give A = 0.
    With `scale_std` (`learner.rloo_scale_std`) A_i is divided by std_g + eps, the group's
    population std as in `group_relative`: a group with little spread (a reader whose samples
    are nearly all one disliked topic) then gets as large a say as any other.
    """
    _check_rewards(rewards, group_index)
    r, n, total, constant, gid = _group_stats(rewards, group_index)
    others_mean = (total - r) / (n - 1).clamp(min=1.0)
    adv = r - others_mean
    if scale_std:
        centered = r - total / n
        std = (_group_sum(centered * centered, gid) / n).sqrt()
        adv = adv / (std + eps)
        constant = constant | (std == 0)
    adv = torch.where(constant, torch.zeros_like(r), adv)
    return adv.to(_float_dtype(rewards))


def varied_groups(group_rewards: list[list[float]]) -> list[int]:
    """Indices of the groups whose rewards are not all equal (DAPO's dynamic sampling filter).

    A group of equal rewards gets advantage 0 from every group-relative estimator, so it adds
    nothing to the policy gradient but its tokens still count in the loss's mean, shrinking
    every other group's step; a group of one has no spread either. Exact comparison, as the
    estimators' own constant-group rule (`_group_stats`).
    """
    return [i for i, r in enumerate(group_rewards) if len(r) > 1 and max(r) > min(r)]


class RunningMean:
    """Exponential moving average b <- decay * b + (1 - decay) * mean(x); `value` is None until
    the first update, which sets b = mean(x). Save/restore it through `value` (a float)."""

    def __init__(self, decay: float = 0.9):
        if not 0.0 <= decay <= 1.0:
            raise InvalidInput("decay", f"must be in [0, 1], got {decay}")
        self.decay = decay
        self.value: float | None = None

    def update(self, x: Tensor) -> None:
        if x.numel() == 0:
            return
        m = float(x.detach().to(torch.float64).mean())
        self.value = m if self.value is None else self.decay * self.value + (1 - self.decay) * m


def reinforce_baseline(rewards: Tensor, baseline: RunningMean) -> Tensor:
    """REINFORCE with a moving baseline: A_i = r_i - b, with b read *before* this batch updates it
    (so a sample never baselines itself). On the first call b starts at this batch's mean."""
    _check_rewards(rewards)
    first_call = baseline.value is None
    if first_call:
        baseline.update(rewards)
    b = baseline.value if baseline.value is not None else 0.0  # None only for an empty batch
    adv = rewards.detach().to(_float_dtype(rewards)) - b
    if not first_call:
        baseline.update(rewards)
    return adv


def token_returns(token_rewards: Tensor, mask: Tensor, gamma: float = 1.0) -> Tensor:
    """Reward-to-go per token: G_t = r_t + gamma * G_{t'}, t' = the next *real* token after t.

    For per-token or multi-part rewards (e.g. a format reward on one token, a task reward on the
    last). Masked positions (padding, or tool output inside a multi-turn completion) are 0 in the
    output, their rewards are ignored, and they do not count as a discount step: the return
    passes through them unchanged. Vectorised over the batch; one step per token position.
    """
    if token_rewards.dim() != 2:
        raise InvalidInput("token_rewards", f"expected [B, T], got {tuple(token_rewards.shape)}")
    if mask.shape != token_rewards.shape:
        raise InvalidInput("mask", f"shape {tuple(mask.shape)} != {tuple(token_rewards.shape)}")
    real = mask.bool()
    r = torch.where(real, token_rewards.detach(), 0.0).to(_float_dtype(token_rewards))
    out = torch.zeros_like(r)
    carry = torch.zeros_like(r[:, 0])
    for t in range(r.shape[1] - 1, -1, -1):
        g = r[:, t] + gamma * carry
        carry = torch.where(real[:, t], g, carry)
        out[:, t] = torch.where(real[:, t], g, 0.0)
    return out


def whiten(x: Tensor, mask: Tensor | None = None, eps: float = 1e-8, center: bool = True) -> Tensor:
    """Scale to unit std over the real entries: (x - mean) / (std + eps), or x / (std + eps) with
    `center=False`; masked entries -> 0.

    Population std, taken in float64. `center=False` keeps what x is measured against (a
    baseline) and only fixes its scale. Real entries that are all equal carry nothing to scale:
    they give 0 exactly, as a constant GRPO group does, never a round-off residue over eps.
    """
    if mask is None:
        mask = torch.ones_like(x, dtype=torch.bool)
    if mask.shape != x.shape:
        raise InvalidInput("mask", f"shape {tuple(mask.shape)} != {tuple(x.shape)}")
    real = mask.bool()
    x64 = x.detach().to(torch.float64)
    if x.numel() == 0 or not bool(  # no two real entries differ (or none at all)
        torch.where(real, x64, -torch.inf).amax() > torch.where(real, x64, torch.inf).amin()
    ):
        return torch.zeros_like(x, dtype=_float_dtype(x))
    n = real.sum()
    mean = torch.where(real, x64, 0.0).sum() / n
    std = (torch.where(real, (x64 - mean) ** 2, 0.0).sum() / n).sqrt()
    out = ((x64 - mean) if center else x64) / (std + eps)
    return torch.where(real, out, 0.0).to(_float_dtype(x))


def scaled_baseline(rewards: Tensor, baseline: RunningMean, eps: float = 1e-8) -> Tensor:
    """PPO without a critic: A_i = (r_i - b) / (std(r) + eps), b the running mean read before
    this batch updates it, std the batch's population std; 0 for every sample when std = 0.

    Scaled, not re-centred. OpenRLHF's REINFORCE++ and the `whiten` of TRL / verl (after
    OpenAI's lm-human-preferences) subtract the batch mean; there the mean removed is itself
    the baseline (a critic's GAE, a group mean), but subtracting it after a running baseline
    cancels b: every b gave the same advantages. So the batch fixes only the scale (the
    `shift_mean=False` idea of those `whiten`s, without adding the mean back) and b alone
    decides the sign: a batch better than usual is pushed up as a whole. A batch of equal
    rewards has no spread to scale by: it gets A = 0, like a constant GRPO group.
    """
    return whiten(reinforce_baseline(rewards, baseline), eps=eps, center=False)


def group_scaled(rewards: Tensor, group_index: Tensor, eps: float = 1e-8) -> Tensor:
    """A_i = (r_i - mean_g) / (std_batch(r - mean_g) + eps): each reward against its own group's
    mean, then one scale for the whole batch (OpenRLHF's REINFORCE++-baseline; ppo's
    `learner.ppo_baseline: group`, reinforce's `learner.reinforce_baseline: group`). Unlike GRPO a group of little spread keeps its small
    advantages; unlike a running mean, a prompt that does worse than the others is not pushed
    down as a whole. Groups of equal rewards give 0, and so does a batch of them."""
    return whiten(group_relative(rewards, group_index, scale_std=False), eps=eps, center=False)


def _float_dtype(x: Tensor) -> torch.dtype:
    return x.dtype if x.is_floating_point() else torch.get_default_dtype()
