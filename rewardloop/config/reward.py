"""`reward`: where rewards come from (one kind, or several combined with weights)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

from rewardloop.errors import ConfigError

from .base import REWARD_KINDS, _require, _Section, one_of


@dataclass(frozen=True)
class RewardConfig(_Section):
    section: ClassVar[str] = "reward"
    kind: str = "persona"
    """persona, function, http, grpc or human (see README: Your own feedback)."""
    like_prob: float = 0.9
    """Persona: probability a reader likes a well-formed headline on a topic they like."""
    dislike_prob: float = 0.1
    """Persona: probability a reader likes a well-formed headline on another topic."""
    function: str = ""
    """function: import path `package.module:callable` taking (prompts, completions, metadata)."""
    url: str = ""
    """http: the reward service URL; grpc: host:port of a FeedbackService."""
    timeout_s: float = 10.0
    """Deadline for one call to a remote reward service."""
    max_batch: int = 64
    """Items per call to a remote reward service."""
    retries: int = 3
    """Retries (with exponential backoff) on a failed remote call."""
    max_concurrency: int = 4
    """Concurrent calls a worker makes to a remote reward service."""
    headers: dict = field(default_factory=dict)
    """Extra HTTP headers, e.g. {Authorization: Bearer <token>}."""
    ca_cert: str = ""
    """PEM file of the CA to trust for https:// and grpcs:// reward services (empty = system roots)."""
    sources: tuple = ()
    """Weighted combination (overrides kind): [{kind: http, weight: 0.7, url: ...}, {kind: human, ...}]."""

    def __post_init__(self) -> None:
        _require(self.kind in REWARD_KINDS, self.key("kind"), one_of(REWARD_KINDS))
        _require(0 <= self.like_prob <= 1, self.key("like_prob"), "must be a probability in [0, 1]")
        _require(
            0 <= self.dislike_prob <= self.like_prob,
            self.key("dislike_prob"),
            f"must be in [0, reward.like_prob={self.like_prob}]",
        )
        _require(
            self.kind != "function" or ":" in self.function,
            self.key("function"),
            "set it to `module.path:callable`",
        )
        _require(
            self.kind not in ("http", "grpc") or bool(self.url),
            self.key("url"),
            f"reward.kind={self.kind} needs reward.url",
        )  # human: RunConfig checks (autostart fills it)
        _require(self.timeout_s > 0, self.key("timeout_s"), "must be > 0")
        _require(self.max_batch >= 1, self.key("max_batch"), "must be >= 1")
        _require(self.retries >= 0, self.key("retries"), "must be >= 0")
        _require(self.max_concurrency >= 1, self.key("max_concurrency"), "must be >= 1")
        _require(
            isinstance(self.headers, dict),
            self.key("headers"),
            "must be a mapping of header: value",
        )
        self.source_configs()  # validates every entry of `sources`

    def kinds(self) -> list[str]:
        """The kind of every part of the reward: each of `sources`, else `kind` alone."""
        return [sub.kind for _, _, sub in self.source_configs()] or [self.kind]

    def source_configs(self) -> list[tuple[str, float, RewardConfig]]:
        """(name, weight, config) per entry of `sources`; each inherits this section's other keys."""
        known = {f.name for f in dataclasses.fields(self)} - {"sources"}
        out, names = [], set()
        for i, spec in enumerate(self.sources):
            key = f"{self.key('sources')}[{i}]"
            _require(
                isinstance(spec, dict),
                key,
                "each source is a mapping like {kind: http, weight: 0.5, url: ...}",
            )
            _require(
                spec.get("kind") in REWARD_KINDS,
                f"{key}.kind",
                one_of(REWARD_KINDS),
                spec.get("kind"),
            )
            weight = spec.get("weight", 1.0)
            _require(
                isinstance(weight, (int, float))
                and not isinstance(weight, bool)
                and abs(weight) < float("inf"),
                f"{key}.weight",
                "must be a finite number",
            )
            unknown = sorted(set(spec) - known - {"weight", "name"})
            _require(
                not unknown,
                f"{key}.{unknown[0] if unknown else ''}",
                f"unknown key; known: weight, name, {', '.join(sorted(known))}",
            )
            name = str(spec.get("name") or spec["kind"])
            _require(
                name not in names,
                f"{key}.name",
                f"{name!r} is used twice; give each source a distinct name",
            )
            names.add(name)
            from .loading import _coerce, _field_types

            types_ = _field_types(RewardConfig)
            overrides = {
                k: _coerce(v, types_[k], f"{key}.{k}")
                for k, v in spec.items()
                if k not in ("weight", "name")
            }
            try:
                sub = dataclasses.replace(self, sources=(), **overrides)
            except ConfigError as exc:
                raise ConfigError(f"{key}.{str(exc).removeprefix('reward.')}") from None
            except TypeError as exc:
                raise ConfigError(f"{key}: {exc}") from None
            out.append((name, float(weight), sub))
        return out
