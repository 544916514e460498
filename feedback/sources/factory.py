"""Build the reward source the config asks for: `reward.kind`, or `reward.sources` combined.

    make_reward_source(cfg, seed)      # cfg: a RunConfig (uses .reward and .feedback) or a RewardConfig

Kinds: persona (simulated readers), function (a Python callable), http (a reward service),
grpc (a FeedbackService.Score server), human (ratings through the feedback gateway). Sources
that show generations to someone outside (http, grpc) run the content check first when
`feedback.content_check` is set; the gateway runs it for human ratings.
"""

from __future__ import annotations

from collections.abc import Callable

from rewardloop.config import FeedbackConfig, RewardConfig
from rewardloop.errors import ConfigError

from .base import RewardSource


def make_reward_source(
    cfg,
    seed: int = 0,
    persona_factory: Callable[[RewardConfig, int], RewardSource] | None = None,
    feedback: FeedbackConfig | None = None,
) -> RewardSource:
    """The configured reward source; `persona_factory(cfg, seed)` overrides the persona kind."""
    if hasattr(cfg, "reward"):  # a RunConfig
        feedback = feedback or cfg.feedback
        cfg = cfg.reward
    feedback = feedback or FeedbackConfig()
    if cfg.sources:
        from .combined import CombinedReward

        parts = [
            (name, weight, _single(sub, seed, persona_factory, feedback, name))
            for name, weight, sub in cfg.source_configs()
        ]
        return CombinedReward(parts)
    return _single(cfg, seed, persona_factory, feedback, cfg.kind)


def _single(
    cfg: RewardConfig, seed: int, persona_factory, feedback: FeedbackConfig, name: str
) -> RewardSource:
    kind = cfg.kind
    if kind == "persona":
        if persona_factory is not None:
            return persona_factory(cfg, seed)
        from rewardloop.feedback.sim.personas import PersonaReward

        return PersonaReward(cfg, seed=seed)
    if kind == "function":
        from .function_source import FunctionReward

        return FunctionReward.from_config(cfg, name=name)
    if kind == "human":
        from rewardloop.feedback.gateway.core import resolve_token

        from .human_source import HumanReward

        return HumanReward.from_config(cfg, token=resolve_token(feedback.token), name=name)
    if kind == "http":
        from .http_source import HttpReward

        source: RewardSource = HttpReward.from_config(cfg, name=name)
    elif kind == "grpc":
        from .grpc_source import GrpcReward

        source = GrpcReward.from_config(cfg, name=name)
    else:
        raise ConfigError(f"reward.kind: unknown kind {kind!r}")
    if feedback.content_check:
        from .content_check import ContentCheckedSource, load_check

        source = ContentCheckedSource(
            source, load_check(feedback.content_check), feedback.blocked_reward
        )
    return source
