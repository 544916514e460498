"""The algorithm table: what each `learner.algorithm` computes, looked up once by the trainer.

An `Algorithm` is three small pure pieces, so the trainer never dispatches on a name:

    advantages(rewards [B], group_index [B], cfg, baseline) -> A [B]
    loss(logprobs, behavior_logprobs, mask, A, cfg)         -> LossResult(loss, stats)
    epochs(cfg)                                             -> optimizer passes per step

| name      | advantages                              | loss                                   | passes           |
|-----------|-----------------------------------------|----------------------------------------|------------------|
| grpo      | group-relative (/ std if scale_std)     | PPO-clip vs behavior log-probs         | 1                |
| rloo      | leave-one-out (/ std if rloo_scale_std) | PPO-clip (rloo_loss: clip; is = the IS one below) | 1  |
| reinforce | running-mean baseline (reinforce_baseline: group = group mean / batch std) | PPO-clip (reinforce_loss: is = policy gradient x truncated IS weights) | 1 |
| ppo       | running-mean (or group, ppo_baseline) baseline / batch std | PPO-clip vs behavior log-probs | learner.ppo_epochs |

The clip's upper bound is `1 + learner.clip_eps_high` (0 = clip_eps), `learner.dual_clip`
bounds negative advantages' objective, and `learner.is_level: sequence` clips one ratio per
completion (GSPO); the importance weights are `min(pi / pi_behavior, learner.is_cap)` per token
or, with `learner.is_level: sequence`, per completion. The table's keys are exactly `rewardloop.config.ALGORITHMS` (tested).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from rewardloop.config import ALGORITHMS, LearnerConfig
from rewardloop.config.base import one_of
from rewardloop.errors import ConfigError
from rewardloop.learner import advantages as adv
from rewardloop.learner import losses

__all__ = ["ALGORITHM_TABLE", "Algorithm", "LossResult", "algorithm_for"]


@dataclass(frozen=True)
class LossResult:
    """The policy loss to minimise (a scalar with its graph) and its stats (Python floats)."""

    loss: Tensor
    stats: dict[str, float]


AdvantageFn = Callable[[Tensor, Tensor, LearnerConfig, adv.RunningMean], Tensor]
"""(rewards [B], group_index [B], cfg, baseline) -> advantages [B]; may update `baseline`."""
LossFn = Callable[[Tensor, Tensor, Tensor, Tensor, LearnerConfig], LossResult]
"""(logprobs [B, T], behavior_logprobs [B, T], mask [B, T], advantages [B], cfg) -> LossResult."""


def _one_pass(cfg: LearnerConfig) -> int:
    return 1


@dataclass(frozen=True)
class Algorithm:
    """One row of the table: a name and the three pieces the trainer calls through."""

    name: str
    advantages: AdvantageFn
    loss: LossFn
    epochs: Callable[[LearnerConfig], int] = _one_pass


# -- advantages ------------------------------------------------------------------------------
def _group_relative(rewards, group_index, cfg, baseline) -> Tensor:
    return adv.group_relative(rewards, group_index, scale_std=cfg.scale_std)


def _leave_one_out(rewards, group_index, cfg, baseline) -> Tensor:
    return adv.leave_one_out(rewards, group_index, scale_std=cfg.rloo_scale_std)


def _reinforce(rewards, group_index, cfg, baseline) -> Tensor:
    # learner.reinforce_baseline: the running mean over all rewards (the one `baseline` carries
    # between steps), or the prompt's group mean, batch-scaled (REINFORCE++-baseline).
    if cfg.reinforce_baseline == "group":
        return adv.group_scaled(rewards, group_index)
    return adv.reinforce_baseline(rewards, baseline)


def _scaled_baseline(rewards, group_index, cfg, baseline) -> Tensor:
    # ppo: no critic for sequence rewards; a running baseline, scaled by the batch's std (not
    # re-centred on the batch mean, which would cancel the baseline). `ppo_baseline: group`
    # centres each reward on its own group's mean instead (REINFORCE++-baseline).
    if cfg.ppo_baseline == "group":
        return adv.group_scaled(rewards, group_index)
    return adv.scaled_baseline(rewards, baseline)


# -- losses ----------------------------------------------------------------------------------
def clip_loss(logprobs, behavior_logprobs, mask, advantages, cfg: LearnerConfig) -> LossResult:
    """PPO-clip with the ratio against the behavior log-probs; clip range
    [1 - clip_eps, 1 + (clip_eps_high or clip_eps)], dual-clip, per-token or per-completion
    (GSPO) ratio, log-ratio bound."""
    loss, stats = losses.ppo_clip_loss(
        logprobs,
        behavior_logprobs,
        advantages,
        mask,
        clip_eps=cfg.clip_eps,
        aggregation=cfg.aggregation,
        clip_eps_high=cfg.clip_eps_high or None,
        dual_clip=cfg.dual_clip,
        level=cfg.is_level,
        log_ratio_bound=cfg.log_ratio_bound,
        norm_tokens=cfg.norm_tokens,
    )
    return LossResult(loss, {k: float(v) for k, v in stats.items()})


def weighted_pg_loss(
    logprobs, behavior_logprobs, mask, advantages, cfg: LearnerConfig
) -> LossResult:
    """Policy gradient with truncated importance weights min(pi / pi_behavior, is_cap), taken
    per token or per completion (`is_level`)."""
    weights, is_stats = losses.truncated_importance_weights(
        logprobs.detach(), behavior_logprobs, mask, cap=cfg.is_cap, level=cfg.is_level
    )
    loss, stats = losses.policy_gradient_loss(
        logprobs,
        advantages,
        mask,
        weights=weights,
        aggregation=cfg.aggregation,
        norm_tokens=cfg.norm_tokens,
    )
    return LossResult(loss, {k: float(v) for k, v in {**stats, **is_stats}.items()})


def _clip_or_is(key: str):
    """The loss `learner.<key>` names: `clip_loss` (clip: PPO-clip, the peers' RLOO and
    REINFORCE++ loss) or `weighted_pg_loss` (is: policy gradient x truncated IS weights)."""

    def loss(logprobs, behavior_logprobs, mask, advantages, cfg: LearnerConfig) -> LossResult:
        chosen = clip_loss if getattr(cfg, key) == "clip" else weighted_pg_loss
        return chosen(logprobs, behavior_logprobs, mask, advantages, cfg)

    loss.__name__ = key
    return loss


rloo_loss = _clip_or_is("rloo_loss")
reinforce_loss = _clip_or_is("reinforce_loss")


ALGORITHM_TABLE: dict[str, Algorithm] = {
    "grpo": Algorithm("grpo", _group_relative, clip_loss),
    "rloo": Algorithm("rloo", _leave_one_out, rloo_loss),
    "reinforce": Algorithm("reinforce", _reinforce, reinforce_loss),
    "ppo": Algorithm("ppo", _scaled_baseline, clip_loss, epochs=lambda cfg: cfg.ppo_epochs),
}


def algorithm_for(name: str) -> Algorithm:
    """The table's row for `learner.algorithm` = `name` (ConfigError naming the key if none)."""
    try:
        return ALGORITHM_TABLE[name]
    except KeyError:
        raise ConfigError(f"learner.algorithm: {one_of(ALGORITHMS)}, got {name!r}") from None
