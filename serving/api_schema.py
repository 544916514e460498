"""OpenAI request fields in, OpenAI response objects out: the API's wire shapes in one place.

Honoured request fields: `model` (the served name or `<name>-v<N>`; any other is 404),
`prompt` (a string, or a list of one string) / `messages` (role + string content), `max_tokens`
(1..serve.max_tokens, default serve.max_tokens), `temperature` (0..2; 0 samples at 1e-3),
`n` (1..serve.max_n), `user` (<= 256 characters), `stream`, and `metadata.context` (the
context key of the learner's baseline). Other fields are accepted and ignored, as OpenAI's
optional ones are by many compatible servers. Every response names its version twice: `model`
is `<name>-v<N>` and `system_fingerprint` is `v<N>`.
"""

from __future__ import annotations

import math
import re

from rewardloop.errors import InvalidInput, NotFound

ROLES = ("system", "user", "assistant", "developer", "tool")


def _int(body: dict, name: str, default: int, lo: int, hi: int, key: str) -> int:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidInput(name, f"must be an integer in [{lo}, {hi}] ({key}), got {value!r}")
    return value


def request_args(body: dict, cfg, chat: bool) -> dict:
    """The keyword arguments of ServeCore.complete (+ `stream`, `prompt`) from a request body."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidInput("model", "must name the model (see GET /v1/models)")
    if model != cfg.model_name and not re.fullmatch(rf"{re.escape(cfg.model_name)}-v\d+", model):
        raise NotFound(f"model: {model[:80]!r} does not exist; use {cfg.model_name!r}")
    temperature = body.get("temperature", 1.0)
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not (math.isfinite(temperature) and 0 <= temperature <= 2)
    ):
        raise InvalidInput("temperature", f"must be a number in [0, 2], got {temperature!r}")
    user = body.get("user", "")
    if not isinstance(user, str) or len(user) > 256:
        raise InvalidInput("user", "must be a string of at most 256 characters")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidInput("stream", f"must be true or false, got {stream!r}")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict) or not isinstance(metadata.get("context", ""), str):
        raise InvalidInput("metadata", "must be an object whose `context` is a string")
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
    args = {
        "n": _int(body, "n", 1, 1, cfg.max_n, "serve.max_n"),
        "max_tokens": _int(
            {"max_tokens": max_tokens},
            "max_tokens",
            cfg.max_tokens,
            1,
            cfg.max_tokens,
            "serve.max_tokens",
        ),  # fmt: skip
        "temperature": float(temperature),
        "user": user,
        "context": metadata.get("context", "")[:256],
        "stream": stream,
    }
    if not chat:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str) or not prompt:
            raise InvalidInput("prompt", "must be a non-empty string (one prompt per request)")
        args["prompt"] = prompt
    return args


def chat_messages(core, body: dict) -> str:
    """The prompt text of a chat request's `messages`."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidInput("messages", "must be a non-empty list of {role, content}")
    clean = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise InvalidInput(f"messages[{i}].role", f"must be one of {', '.join(ROLES)}")
        content = m.get("content")
        if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
            parts = [p.get("text") for p in content if isinstance(p, dict)]
            content = "".join(p for p in parts if isinstance(p, str))
        if not isinstance(content, str):
            raise InvalidInput(f"messages[{i}].content", "must be a string")
        clean.append({"role": m["role"], "content": content})
    return core.chat_prompt(clean)


def _usage(done) -> dict:
    completion = sum(c.tokens for c in done.choices)
    return {
        "prompt_tokens": done.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": done.prompt_tokens + completion,
    }


def completion_json(done, model_name: str, chat: bool) -> dict:
    """The non-streamed answer: a `text_completion` or a `chat.completion`."""
    head = {
        "id": done.id,
        "created": done.created,
        "model": f"{model_name}-v{done.version}",
        "system_fingerprint": f"v{done.version}",
        "usage": _usage(done),
    }
    if chat:
        choices = [
            {"index": i, "message": {"role": "assistant", "content": c.text},
             "finish_reason": c.finish_reason, "logprobs": None, "response_id": c.response_id}
            for i, c in enumerate(done.choices)
        ]  # fmt: skip
        return {**head, "object": "chat.completion", "choices": choices}
    choices = [
        {"index": i, "text": c.text, "finish_reason": c.finish_reason, "logprobs": None,
         "response_id": c.response_id}
        for i, c in enumerate(done.choices)
    ]  # fmt: skip
    return {**head, "object": "text_completion", "choices": choices}


def _pieces(text: str, tokenizer) -> list[str]:
    """The text cut at token boundaries (pieces re-join to exactly `text`)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    pieces, prev = [], ""
    for i in range(1, len(ids) + 1):
        cur = tokenizer.decode(ids[:i], skip_special_tokens=True)
        if cur.startswith(prev) and cur != prev:
            pieces.append(cur[len(prev) :])
            prev = cur
    if prev != text:
        pieces.append(text[len(prev) :] if text.startswith(prev) else text)
    return pieces or [""]


def stream_chunks(done, model_name: str, chat: bool, tokenizer):
    """The server-sent events of a streamed answer, one per token piece, then the finish."""
    head = {"id": done.id, "created": done.created, "model": f"{model_name}-v{done.version}",
            "system_fingerprint": f"v{done.version}"}  # fmt: skip
    kind = "chat.completion.chunk" if chat else "text_completion"
    for i, c in enumerate(done.choices):
        for j, piece in enumerate(_pieces(c.text, tokenizer)):
            if chat:
                delta = {"content": piece, **({"role": "assistant"} if j == 0 else {})}
                choice = {"index": i, "delta": delta, "finish_reason": None, "logprobs": None}
            else:
                choice = {"index": i, "text": piece, "finish_reason": None, "logprobs": None}
            yield {**head, "object": kind, "choices": [choice]}
        end = {"index": i, "finish_reason": c.finish_reason, "logprobs": None,
               "response_id": c.response_id}  # fmt: skip
        end.update({"delta": {}} if chat else {"text": ""})
        yield {**head, "object": kind, "choices": [end]}
