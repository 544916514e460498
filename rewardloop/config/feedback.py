"""`feedback`: the feedback gateway a run starts or talks to, and its simulated raters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import EXPIRY_OUTCOMES, FEEDBACK_AGGREGATIONS, UNRATED, _require, _Section, one_of


@dataclass(frozen=True)
class FeedbackConfig(_Section):
    section: ClassVar[str] = "feedback"
    store_path: str = "~/.local/share/rewardloop/feedback.sqlite3"
    """The gateway's SQLite store (WAL mode); ratings are written here before they are acked."""
    expiry_s: float = 3600.0
    """Seconds a published item waits for a rating before the expiry outcome applies."""
    expiry_outcome: str = "drop"
    """What an expired item becomes: drop (the worker discards the trajectory) or neutral."""
    neutral_reward: float = 0.5
    """Reward of an item that expired with expiry_outcome=neutral."""
    token: str = ""
    """Bearer token every gateway call but health needs (a literal or env:NAME; empty = open)."""
    tls_cert: str = ""
    """PEM certificate: serve gRPC over TLS and HTTP over HTTPS (needs tls_key)."""
    tls_key: str = ""
    """PEM private key matching tls_cert."""
    host: str = "127.0.0.1"
    """Interface the gateway binds (0.0.0.0 to let raters on other machines in)."""
    http_port: int = 8470
    """Port of the HTTP/JSON API and the rating page (0 = a free one)."""
    grpc_port: int = 8471
    """Port of the gRPC FeedbackService (0 = a free one)."""
    metrics_port: int = 0
    """Prometheus /metrics port of the gateway (0 = a free one; -1 = off)."""
    metrics_host: str = "127.0.0.1"
    """Interface /metrics binds; it serves counts only, no token (see README, Live metrics)."""
    max_request_bytes: int = 1 << 20
    """Largest request body the gateway accepts (HTTP 413 / gRPC RESOURCE_EXHAUSTED beyond)."""
    retention_days: float = 30.0
    """Raw ratings and finished items older than this are purged (0 = keep forever)."""
    content_check: str = ""
    """`module:callable` run on every item before a rater or user sees it; empty = built-in no-op."""
    blocked_reward: float = -1.0
    """Reward of an item the content check blocked (it is never shown)."""
    autostart: bool = False
    """`train` starts this gateway (a Ray actor) and points reward.url at it; a relative store_path lands in the run dir."""
    simulated_raters: int = 0
    """helpdesk: simulated users rating through the autostarted gateway's HTTP API (0 = none; people rate)."""
    rating_delay_s: float = 2.0
    """Mean seconds a simulated rater takes to answer (each delay is uniform in [0.5, 1.5] x this)."""
    wait_s: float = 86400.0
    """serve: seconds a logged response waits for its user's rating before `unrated` applies."""
    unrated: str = "default"
    """serve: what an unrated response becomes after wait_s: default (trained with
    default_reward) or drop (never trained; counted either way)."""
    default_reward: float = 0.0
    """serve: the reward of a response nobody rated within wait_s (unrated=default)."""
    aggregation: str = "earliest"
    """serve: several ratings of one response: earliest (trained as soon as the first comes),
    latest or mean (both wait for wait_s, then combine)."""

    def __post_init__(self) -> None:
        _require(
            bool(self.store_path),
            self.key("store_path"),
            "must not be empty (use :memory: for a throwaway store)",
        )
        _require(self.expiry_s > 0, self.key("expiry_s"), "must be > 0")
        _require(
            self.expiry_outcome in EXPIRY_OUTCOMES,
            self.key("expiry_outcome"),
            one_of(EXPIRY_OUTCOMES),
        )
        _require(
            abs(self.neutral_reward) < float("inf"), self.key("neutral_reward"), "must be finite"
        )
        _require(
            bool(self.tls_cert) == bool(self.tls_key),
            self.key("tls_cert"),
            "set both feedback.tls_cert and feedback.tls_key, or neither",
        )
        _require(bool(self.host), self.key("host"), "must not be empty")
        _require(0 <= self.http_port < 65536, self.key("http_port"), "must be a TCP port or 0")
        _require(0 <= self.grpc_port < 65536, self.key("grpc_port"), "must be a TCP port or 0")
        _require(
            -1 <= self.metrics_port < 65536,
            self.key("metrics_port"),
            "must be a TCP port, 0 (a free one) or -1 (off)",
        )
        _require(self.max_request_bytes >= 1024, self.key("max_request_bytes"), "must be >= 1024")
        _require(
            self.retention_days >= 0, self.key("retention_days"), "must be >= 0 (0 = keep forever)"
        )
        _require(
            not self.content_check or ":" in self.content_check,
            self.key("content_check"),
            "set it to `module.path:callable` or leave it empty",
        )
        _require(
            abs(self.blocked_reward) < float("inf"), self.key("blocked_reward"), "must be finite"
        )
        _require(
            self.simulated_raters >= 0, self.key("simulated_raters"), "must be >= 0 (0 = none)"
        )
        _require(
            not self.simulated_raters or self.autostart,
            self.key("simulated_raters"),
            "they rate through the gateway the run starts: set feedback.autostart=true",
        )
        _require(self.rating_delay_s >= 0, self.key("rating_delay_s"), "must be >= 0 seconds")
        _require(0 < self.wait_s < float("inf"), self.key("wait_s"), "must be finite seconds > 0")
        _require(self.unrated in UNRATED, self.key("unrated"), one_of(UNRATED))
        _require(
            abs(self.default_reward) < float("inf"), self.key("default_reward"), "must be finite"
        )
        _require(
            self.aggregation in FEEDBACK_AGGREGATIONS,
            self.key("aggregation"),
            one_of(FEEDBACK_AGGREGATIONS),
        )
