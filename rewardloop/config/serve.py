"""`serve`: `rewardloop serve`, the live-traffic front (OpenAI-compatible API, response log,
canary rollout) and the simulated product its example runs against.

The feedback join's own knobs (how long an unrated response waits, what it then becomes, how
several ratings combine) are in `feedback` (`wait_s`, `unrated`, `default_reward`,
`aggregation`); the learning knobs (lr, is_cap, is_level) are `learner`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import _require, _Section, one_of


@dataclass(frozen=True)
class ServeConfig(_Section):
    section: ClassVar[str] = "serve"
    host: str = "127.0.0.1"
    """Interface the OpenAI-compatible API binds (0.0.0.0 needs serve.api_keys)."""
    port: int = 8480
    """Port of the API: /v1/completions, /v1/chat/completions, /v1/models, /v1/feedback (0 = free)."""
    grpc_port: int = -1
    """Port of the gRPC FeedbackService.SubmitRating for live feedback (0 = a free one; -1 = off)."""
    api_keys: str = ""
    """Comma-separated bearer tokens the API accepts (each a literal or env:NAME; empty = open)."""
    model_name: str = "rewardloop"
    """The model id /v1/models lists; responses name `<model_name>-v<version>` in `model`."""
    replicas: int = 1
    """Serving replicas (Ray actors, each holding the stable and the canary weights)."""
    max_queue: int = 64
    """Requests waiting or generating at once; one more is answered 429 with Retry-After."""
    retry_after_s: int = 1
    """The Retry-After seconds a 429 names."""
    max_request_bytes: int = 65536
    """Largest request body accepted (413 beyond)."""
    max_prompt_tokens: int = 256
    """Longest prompt (after the chat template) accepted, in tokens (400 beyond)."""
    max_tokens: int = 32
    """Largest `max_tokens` a request may ask for (also the default when it gives none)."""
    max_n: int = 8
    """Largest `n` (completions per request)."""
    request_timeout_s: float = 30.0
    """Longest a request waits for its completion (504 beyond); every wait is bounded."""
    log_path: str = "responses.sqlite3"
    """The durable response log (SQLite, WAL); a relative path lands in the run directory."""
    user_secret: str = ""
    """HMAC key that turns `user` into the logged pseudonym (literal or env:NAME; empty = a random
    one made once and kept in the log, so pseudonyms survive restarts)."""
    train_batch: int = 16
    """Most joined responses one optimizer step of the live learner takes."""
    min_batch: int = 0
    """Fewest fresh joined responses the live learner steps on (0 = train_batch: a fixed batch).
    Below train_batch a step takes whatever arrived while the learner waited, so versions
    advance at the pace of the feedback and ratings do not queue up until they are stale."""
    max_version_lag: int = 6
    """Drop a joined response served more than this many versions behind the learner (counted)."""
    max_train_ahead: int = 4
    """The learner pauses while it is this many versions ahead of the stable version (the
    data it would train on next was served that far behind: bounded lag; 0 = never pause)."""
    baseline_decay: float = 0.9
    """Per-context running baseline: b <- decay * b + (1 - decay) * reward."""
    scale_advantages: bool = True
    """Divide each advantage by its context's running reward std (floor 0.1)."""
    canary_fraction: float = 0.2
    """Share of users (sticky, by their pseudonym) a new version serves before it is promoted."""
    canary_window: int = 40
    """Rated responses each of canary and stable needs before the canary is judged."""
    canary_alpha: float = 0.05
    """One-sided Welch test: roll back when P(canary no worse than stable) < alpha."""
    canary_margin: float = 0.0
    """Non-inferiority margin: the canary may be this much worse in mean reward and still pass."""
    canary_reference: str = "concurrent"
    """The stable arm the canary is judged against: `concurrent` (the stable's ratings served
    since the canary started) or `lifetime` (all of the stable version's ratings, from its own
    canary phase on: more samples, a steadier bar when traffic is stationary)."""
    canary_timeout_s: float = 600.0
    """A canary not judged within this many seconds (too little traffic) is rolled back."""
    duration_s: float = 0.0
    """Stop `rewardloop serve` after this many seconds (0 = until interrupted)."""
    sim_users: int = 0
    """Simulated product users calling the API through the openai client (0 = none)."""
    sim_concurrency: int = 4
    """Requests the simulated product has in flight at once."""
    sim_rate: float = 20.0
    """Requests per second the simulated product sends at most, all users together (0 = no cap)."""
    sim_never_rate: float = 0.2
    """Share of responses a simulated user never rates."""
    sim_delay_s: float = 5.0
    """Mean seconds before a simulated rating (exponential; capped at 10 x this)."""

    def __post_init__(self) -> None:
        _require(bool(self.host), self.key("host"), "must not be empty")
        _require(0 <= self.port < 65536, self.key("port"), "must be a TCP port or 0")
        _require(-1 <= self.grpc_port < 65536, self.key("grpc_port"), "must be a port, 0 or -1")
        _require(bool(self.model_name), self.key("model_name"), "must not be empty")
        _require(1 <= self.replicas <= 64, self.key("replicas"), "must be in [1, 64]")
        _require(self.max_queue >= 1, self.key("max_queue"), "must be >= 1")
        _require(self.retry_after_s >= 1, self.key("retry_after_s"), "must be >= 1")
        _require(self.max_request_bytes >= 1024, self.key("max_request_bytes"), "must be >= 1024")
        _require(self.max_prompt_tokens >= 1, self.key("max_prompt_tokens"), "must be >= 1")
        _require(self.max_tokens >= 1, self.key("max_tokens"), "must be >= 1")
        _require(self.max_n >= 1, self.key("max_n"), "must be >= 1")
        _require(
            0 < self.request_timeout_s < float("inf"),
            self.key("request_timeout_s"),
            "must be a finite number of seconds > 0",
        )
        _require(bool(self.log_path), self.key("log_path"), "must not be empty")
        _require(self.train_batch >= 1, self.key("train_batch"), "must be >= 1")
        _require(
            0 <= self.min_batch <= self.train_batch,
            self.key("min_batch"),
            f"must be in [0, serve.train_batch={self.train_batch}] (0 = train_batch)",
        )
        _require(self.max_version_lag >= 0, self.key("max_version_lag"), "must be >= 0")
        _require(self.max_train_ahead >= 0, self.key("max_train_ahead"), "must be >= 0")
        _require(0 <= self.baseline_decay < 1, self.key("baseline_decay"), "must be in [0, 1)")
        _require(
            0 <= self.canary_fraction < 1,
            self.key("canary_fraction"),
            "must be in [0, 1) (0 = promote every version at once)",
        )
        _require(self.canary_window >= 2, self.key("canary_window"), "must be >= 2")
        _require(0 < self.canary_alpha < 0.5, self.key("canary_alpha"), "must be in (0, 0.5)")
        _require(self.canary_margin >= 0, self.key("canary_margin"), "must be >= 0")
        _require(
            self.canary_reference in ("concurrent", "lifetime"),
            self.key("canary_reference"),
            one_of(("concurrent", "lifetime")),
        )
        _require(self.canary_timeout_s > 0, self.key("canary_timeout_s"), "must be > 0")
        _require(self.duration_s >= 0, self.key("duration_s"), "must be >= 0 (0 = forever)")
        _require(self.sim_users >= 0, self.key("sim_users"), "must be >= 0")
        _require(self.sim_concurrency >= 1, self.key("sim_concurrency"), "must be >= 1")
        _require(self.sim_rate >= 0, self.key("sim_rate"), "must be >= 0 (0 = no cap)")
        _require(0 <= self.sim_never_rate <= 1, self.key("sim_never_rate"), "must be in [0, 1]")
        _require(self.sim_delay_s >= 0, self.key("sim_delay_s"), "must be >= 0")
