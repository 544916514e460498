"""The OpenAI-compatible HTTP API of `rewardloop serve` (aiohttp, on its own loop thread).

    GET  /healthz                          {"status": "SERVING"}  (no key)
    GET  /v1/models                        the model, and each live version as `<name>-v<N>`
    POST /v1/completions                   prompt, max_tokens, temperature, n, user, stream
    POST /v1/chat/completions              messages (chat template, else service.plain_chat)
    POST /v1/feedback                      {"response_id", "value" | "stars", "user", "key"}
    GET  /metrics                          Prometheus counts and gauges (no text, no ids)
    /admin/{versions,rollback,pin,forget,trained_on}   operator calls (the admin token)

Errors are OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with the
status of `rewardloop.errors`. Keys: `Authorization: Bearer <one of serve.api_keys>` (none
configured = open); the admin endpoints always need the admin token. Limits: a body over
serve.max_request_bytes is 413; more than serve.max_queue requests in the house is 429 with
`Retry-After`; a request not answered within serve.request_timeout_s is 504. `stream: true`
answers server-sent events: the completion, generated and logged first, sent in chunks of
tokens, then `data: [DONE]`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time

from aiohttp import web

from rewardloop.aiohttp_thread import ThreadedHttpApp
from rewardloop.auth import bearer
from rewardloop.errors import (
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    RewardLoopError,
    Unauthenticated,
    http_status,
)
from rewardloop.feedback.gateway.bad_input import parse_json_object

from .api_schema import chat_messages, completion_json, request_args, stream_chunks
from .metrics_text import prometheus_text

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
               413: "invalid_request_error", 429: "rate_limit_error"}  # fmt: skip
log = logging.getLogger(__name__)


class TooManyRequests(RewardLoopError):
    http_status = 429


class TimedOut(RewardLoopError):
    http_status = 504


class OpenAIServer(ThreadedHttpApp):
    """The API over a ServeCore (and, for admin calls, the LiveLoop); port 0 picks one."""

    PORT_KEY, NAME, THREAD = "serve.port", "serve API", "serve-http"

    def __init__(self, core, loop_ctl=None, api_keys: list[str] = (), admin_token: str = ""):
        self.core, self.ctl = core, loop_ctl
        self.cfg = core.serve
        self.api_keys = [k for k in api_keys if k]
        self.admin_token = admin_token
        self.in_flight = 0
        self.counts = {"rejected_queue_full": 0, "timeouts": 0, "errors": 0, "unauthenticated": 0}
        self.latencies: list[float] = []
        self._setup_http(self.cfg.host, self.cfg.port, self.cfg.max_queue + 4)

    # ---- lifecycle --------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.cfg.max_request_bytes, middlewares=[self._errors]
        )
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/feedback", self.feedback)
        app.router.add_get("/metrics", self.metrics)
        for name in ("versions", "rollback", "pin", "forget", "trained_on"):
            app.router.add_post(f"/admin/{name}", self.admin)
        app.router.add_route("*", "/{tail:.*}", self.no_route)
        return app

    # ---- plumbing ---------------------------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler):
        try:
            return await handler(request)
        except RewardLoopError as exc:
            return self._error_response(exc, http_status(exc))
        except web.HTTPRequestEntityTooLarge:
            exc = PayloadTooLarge(
                "body", f"over serve.max_request_bytes={self.cfg.max_request_bytes}"
            )
            return self._error_response(exc, 413)
        except Exception as exc:  # noqa: BLE001 - a bug: logged, counted, the server lives on
            log.exception("serve: internal error on %s %s", request.method, request.path)
            return self._error_response(exc, 500)

    def _error_response(self, exc: BaseException, status: int) -> web.Response:
        self.counts["errors"] += 1
        message = (
            str(exc)
            if isinstance(exc, RewardLoopError)
            else f"internal error: {type(exc).__name__}"
        )
        body = {"error": {"message": message, "type": ERROR_TYPES.get(status, "server_error"),
                          "param": getattr(exc, "field", None), "code": None}}  # fmt: skip
        if status == 401:
            body["error"]["code"] = "invalid_api_key"
        headers = {"Retry-After": str(self.cfg.retry_after_s)} if status == 429 else None
        return web.json_response(body, status=status, headers=headers)

    def _check_key(self, request: web.Request, keys: list[str]) -> None:
        if not keys:
            return
        given = bearer(request.headers.get("Authorization")) or ""
        if not any(hmac.compare_digest(given.encode(), k.encode()) for k in keys):
            self.counts["unauthenticated"] += 1
            raise Unauthenticated("Authorization: a valid `Bearer <api key>` is needed")

    async def _body(self, request: web.Request) -> dict:
        if request.content_length and request.content_length > self.cfg.max_request_bytes:
            raise PayloadTooLarge(
                "body", f"over serve.max_request_bytes={self.cfg.max_request_bytes}"
            )
        return parse_json_object(await request.read())

    async def _call(self, fn, *args):
        """Run `fn` on the pool within serve.request_timeout_s (+ a margin for the log)."""
        fut = self._in_pool(fn, *args)
        try:
            return await asyncio.wait_for(fut, self.cfg.request_timeout_s + 5.0)
        except TimeoutError:
            self.counts["timeouts"] += 1
            raise TimedOut(f"request: not answered within {self.cfg.request_timeout_s} s") from None

    # ---- routes -----------------------------------------------------------------------------

    async def healthz(self, request):
        return web.json_response({"status": "SERVING"})

    async def no_route(self, request):
        raise NotFound(f"path: no route {request.method} {request.path[:100]!r}")

    async def models(self, request):
        self._check_key(request, self.api_keys)
        snap = self.core.router.snapshot()
        name = self.cfg.model_name
        live = [v for v in (snap["stable"], snap["canary"], snap["pinned"]) if v is not None]
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "rewardloop"}]
        data += [{"id": f"{name}-v{v}", "object": "model", "created": 0, "owned_by": "rewardloop"}
                 for v in sorted(set(live))]  # fmt: skip
        return web.json_response({"object": "list", "data": data})

    async def completions(self, request):
        return await self._complete(request, chat=False)

    async def chat(self, request):
        return await self._complete(request, chat=True)

    async def _complete(self, request: web.Request, chat: bool) -> web.StreamResponse:
        self._check_key(request, self.api_keys)
        body = await self._body(request)
        args = request_args(body, self.cfg, chat)
        if self.in_flight >= self.cfg.max_queue:
            self.counts["rejected_queue_full"] += 1
            raise TooManyRequests(f"serving queue is full ({self.cfg.max_queue}); retry later")
        self.in_flight += 1
        t0 = time.perf_counter()
        try:
            prompt = chat_messages(self.core, body) if chat else args.pop("prompt")
            args.pop("prompt", None)
            stream = args.pop("stream")
            done = await self._call(lambda: self.core.complete(prompt, **args))
        finally:
            self.in_flight -= 1
        self.latencies.append(time.perf_counter() - t0)
        del self.latencies[:-10000]
        if not stream:
            return web.json_response(completion_json(done, self.cfg.model_name, chat))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})  # fmt: skip
        await resp.prepare(request)
        for chunk in stream_chunks(done, self.cfg.model_name, chat, self.core.tokenizer):
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def feedback(self, request):
        self._check_key(request, self.api_keys)
        b = await self._body(request)
        res = await self._call(
            lambda: self.core.feedback(
                b.get("response_id"),
                b.get("value"),
                b.get("user", ""),
                b.get("key", ""),
                b.get("stars"),
            )  # fmt: skip
        )
        return web.json_response(res)

    async def metrics(self, request):
        text = prometheus_text(self)
        return web.Response(text=text, content_type="text/plain")

    async def admin(self, request: web.Request):
        self._check_key(request, [self.admin_token])
        b = await self._body(request)
        name = request.path.rsplit("/", 1)[1]
        if name == "versions":
            return web.json_response(self.core.router.snapshot())
        if name == "forget":
            return web.json_response(await self._call(self.core.forget, b.get("user")))
        if name == "trained_on":
            return web.json_response(await self._call(self.core.trained_on, str(b.get("user", ""))))
        version = b.get("version")
        if self.ctl is None:
            raise InvalidInput("version", "this server has no live loop to roll back or pin")
        if name == "pin" and version is None:
            return web.json_response(await self._call(self.ctl.pin, None))
        if isinstance(version, bool) or not isinstance(version, int):
            raise InvalidInput("version", f"must be an integer, got {version!r}")
        fn = self.ctl.rollback if name == "rollback" else self.ctl.pin
        return web.json_response(await self._call(fn, version))
