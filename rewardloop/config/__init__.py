"""The one config system: frozen dataclasses, loaded from YAML, overridden with `--set a.b=v`.

One module per section (model, rollout, learner, reward, feedback; run holds the task, prompts,
eval and cluster sections and `RunConfig`). Every field has a doc line. Validation runs in
`__post_init__` and raises `ConfigError` naming the key, the fix and the bad value, so a bad
value stops a run at once. Allowed-value lists live once, in `base`.
"""

from .base import (
    AGGREGATIONS,
    ALGORITHMS,
    DEVICES,
    DTYPES,
    EXPIRY_OUTCOMES,
    IS_LEVELS,
    KL_ESTIMATORS,
    LR_SCHEDULES,
    PLACEMENT_STRATEGIES,
    REWARD_KINDS,
    WEIGHT_SYNCS,
    _require,
)
from .feedback import FeedbackConfig
from .learner import LearnerConfig
from .loading import load_config, parse_override, replace, to_dict  # noqa: E402, I001
from .model import ModelConfig
from .reward import RewardConfig
from .rollout import RolloutConfig
from .run import ClusterConfig, EvalConfig, PromptsConfig, RunConfig, buffer_capacity

__all__ = [
    "AGGREGATIONS",
    "ALGORITHMS",
    "DEVICES",
    "DTYPES",
    "EXPIRY_OUTCOMES",
    "IS_LEVELS",
    "KL_ESTIMATORS",
    "LR_SCHEDULES",
    "PLACEMENT_STRATEGIES",
    "REWARD_KINDS",
    "WEIGHT_SYNCS",
    "ClusterConfig",
    "EvalConfig",
    "FeedbackConfig",
    "LearnerConfig",
    "ModelConfig",
    "PromptsConfig",
    "RewardConfig",
    "RolloutConfig",
    "RunConfig",
    "_require",
    "buffer_capacity",
    "load_config",
    "parse_override",
    "replace",
    "to_dict",
]
