"""What one live request does, apart from HTTP: route, generate, check, log, answer.

    user_key  = HMAC(user)                      the only form a user is stored in
    version   = router.route(user_key)          stable, the sticky canary share, or pinned
    samples   = generate(version, prompt, n)    a replica (Ray actor) or an in-process Engine
    each choice: content check (blocked -> refusal text, counted, rated feedback.blocked_reward)
    log.log(choices)                            durable before the answer leaves
    -> {"id", "model": "<name>-v<version>", "system_fingerprint": "v<version>", choices...}

Choice 0's response id is the completion's `id`; with n > 1 choice i is `<id>-<i>`, and every
choice carries its own `response_id`, the key feedback is given by. Feedback values: `like` /
`dislike` (1 / 0), `stars` 1-5 (mapped to (stars - 1) / 4), or any finite number.
The context key of the per-context baseline is `metadata.context` when the request gives one,
else the user's pseudonym.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rewardloop.errors import InvalidInput, NotFound
from rewardloop.feedback.sources.content_check import ContentGate, load_check

from .canary import CanaryRouter
from .response_log import Logged, ResponseLog

REFUSAL = "Sorry, I can't help with that."
PLAIN_CHAT_HINT = "assistant:"
LIKE_WORDS = {"like": 1.0, "up": 1.0, "thumbs_up": 1.0, "dislike": 0.0, "down": 0.0}


def plain_chat(messages: list[dict]) -> str:
    """The chat format for a tokenizer without a chat template: one `role: content` line per
    message, then `assistant:` for the model to continue."""
    lines = [f"{m['role']}: {m['content']}" for m in messages]
    return "\n".join([*lines, PLAIN_CHAT_HINT])


def feedback_value(value, stars) -> float:
    """like/dislike -> 1/0, stars 1-5 -> (stars - 1) / 4, a finite number as given."""
    if stars not in (None, 0, ""):
        if isinstance(stars, bool) or not isinstance(stars, int) or not 1 <= stars <= 5:
            raise InvalidInput("stars", f"must be an integer 1-5, got {stars!r}")
        return (stars - 1) / 4
    if isinstance(value, str) and value.lower() in LIKE_WORDS:
        return LIKE_WORDS[value.lower()]
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    raise InvalidInput("value", f"use like, dislike, stars 1-5 or a finite number, got {value!r}")


@dataclass
class Choice:
    response_id: str
    text: str
    finish_reason: str
    tokens: int


@dataclass
class Completion:
    id: str
    version: int
    created: int
    prompt_tokens: int
    choices: list[Choice] = field(default_factory=list)


Generate = Callable[..., list]
"""(version, prompt_ids, n, max_tokens, temperature, timeout_s) -> list[sampling.Sample]."""


class ServeCore:
    """The request path and the feedback path of `rewardloop serve`; thread-safe."""

    def __init__(
        self,
        cfg,
        tokenizer,
        log: ResponseLog,
        router: CanaryRouter,
        generate: Generate,
        clock: Callable[[], float] = time.time,
    ):
        self.cfg, self.serve = cfg, cfg.serve
        self.tokenizer = tokenizer
        self.log, self.router, self.generate = log, router, generate
        self.gate = ContentGate(load_check(cfg.feedback.content_check))
        self.clock = clock
        self.on_forget: list[Callable[[str], int]] = []
        self.counts = {"requests": 0, "choices": 0, "blocked": 0, "forgotten_buffered": 0}
        self.join_delays: list[float] = []
        self._lock = threading.Lock()

    # ---- prompts ----------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) > self.serve.max_prompt_tokens:
            raise InvalidInput(
                "prompt",
                f"{len(ids)} tokens, over serve.max_prompt_tokens={self.serve.max_prompt_tokens}",
            )
        if not ids:
            raise InvalidInput("prompt", "is empty")
        return ids

    def chat_prompt(self, messages: list[dict]) -> str:
        """The prompt text of a chat: the tokenizer's chat template if it has one."""
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        return plain_chat(messages)

    # ---- the request path -------------------------------------------------------------------

    def complete(
        self,
        prompt: str,
        n: int = 1,
        max_tokens: int | None = None,
        temperature: float = 1.0,
        user: str = "",
        context: str = "",
    ) -> Completion:
        """Serve one request: route, generate, check, log (durably), answer."""
        prompt_ids = self.encode(prompt)
        user_key = self.log.user_key(user or "anonymous")
        version = self.router.route(user_key)
        args = (prompt_ids, n, max_tokens or self.serve.max_tokens, temperature,
                self.serve.request_timeout_s)  # fmt: skip
        try:
            samples = self.generate(version, *args)
        except NotFound:  # its version was retired mid-flight: the stable one answers
            version = self.router.stable
            samples = self.generate(version, *args)
        base_id = f"cmpl-{secrets.token_hex(12)}"
        done = Completion(base_id, version, int(self.clock()), len(prompt_ids))
        rows, blocked = [], []
        eos = self.tokenizer.eos_token_id
        for i, s in enumerate(samples):
            rid = base_id if i == 0 else f"{base_id}-{i}"
            ids = [t for t in s.completion_ids if t != eos]
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            finish = "stop" if s.completion_ids and s.completion_ids[-1] == eos else "length"
            if self.gate.reasons([(rid, prompt, text, {})]):
                text, finish = REFUSAL, "content_filter"
                blocked.append(rid)
            done.choices.append(Choice(rid, text, finish, len(s.completion_ids)))
            rows.append(
                Logged(
                    rid,
                    user_key,
                    context or user_key,
                    prompt_ids,
                    s.completion_ids,
                    s.logprobs,
                    version,
                )  # fmt: skip
            )
        if not self.log.is_forgotten(user_key):  # a forgotten user is served, never logged
            self.log.log(rows)
            for rid in blocked:  # the policy learns to stop producing what is blocked
                self.log.add_feedback(rid, self.cfg.feedback.blocked_reward, "", f"blocked:{rid}")
        with self._lock:
            self.counts["requests"] += 1
            self.counts["choices"] += len(rows)
            self.counts["blocked"] += len(blocked)
        return done

    # ---- feedback and privacy ---------------------------------------------------------------

    def feedback(self, response_id, value=None, user="", key="", stars=None) -> dict:
        if not isinstance(response_id, str) or not response_id:
            raise InvalidInput("response_id", "must be a non-empty string")
        if not isinstance(user, str) or not isinstance(key, str):
            raise InvalidInput("user" if not isinstance(user, str) else "key", "must be a string")
        reward = feedback_value(value, stars)
        user_key = self.log.user_key(user) if user else ""
        result = self.log.add_feedback(response_id, reward, user_key, key)
        if not result["duplicate"]:
            with self._lock:
                self.join_delays.append(result["joined_after_s"])
        return result

    def forget(self, user: str) -> dict:
        """Delete a user's responses and feedback, their buffered trajectories, refuse later."""
        if not isinstance(user, str) or not user:
            raise InvalidInput("user", "must be a non-empty string")
        user_key = self.log.user_key(user)
        deleted = self.log.forget(user_key)
        buffered = sum(fn(user_key) for fn in self.on_forget)
        with self._lock:
            self.counts["forgotten_buffered"] += buffered
        return {**deleted, "buffered": buffered, "trained_on": self.log.trained_on(user_key)}

    def trained_on(self, user: str) -> dict[int, int]:
        return self.log.trained_on(self.log.user_key(user))

    def stats(self) -> dict:
        with self._lock:
            delays = sorted(self.join_delays)
            counts = dict(self.counts)
        pick = (lambda q: delays[min(len(delays) - 1, int(q * len(delays)))]) if delays else None
        return {
            **counts,
            "blocked_by_check": self.gate.blocked,
            "feedback_join_delay_s": {
                "n": len(delays),
                "p50": pick(0.5) if pick else None,
                "p90": pick(0.9) if pick else None,
                "max": delays[-1] if delays else None,
            },
            "log": self.log.counters(),
        }
