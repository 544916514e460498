"""The gateway's HTTP face: the JSON API (same calls as gRPC) and the rating page.

    GET  /healthz                     -> {"status": "SERVING"}            (no token needed)
    GET  /v1/stats                    -> counters
    POST /v1/publish  {"items": [...], "publisher": str}
    GET  /v1/pending?limit=20&rater=r
    POST /v1/ratings  {"item_id", "value" | "stars", "rater", "idempotency_key"}
    POST /v1/collect  {"publisher", "ack_ids": [...], "limit"}
    GET  /rate[?scale=like|stars][&token=T]   the rating page;  POST /rate   its forms

Errors answer `{"error": message, "field": name}` with the status of `rewardloop.errors`.
The bearer token comes from `Authorization: Bearer <token>` or, for a person using the page,
from an HttpOnly SameSite=Strict cookie set when they open the link with `?token=`. The
aiohttp app runs on its own event loop in its own thread (`start()` / `stop()`); store calls
run on a small thread pool so a slow disk never stalls health checks.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from rewardloop.errors import (
    ConfigError,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    RewardLoopError,
    http_status,
)

from .core import RATER_RE, FeedbackCore
from .page import SECURITY_HEADERS, STATIC_DIR, render_page, render_unauthorized

TOKEN_COOKIE, RATER_COOKIE = "rl_token", "rl_rater"
YEAR_S = 365 * 86400


class HttpGateway:
    """aiohttp server for a FeedbackCore on its own loop thread; port 0 picks a free port."""

    def __init__(
        self,
        core: FeedbackCore,
        host: str = "127.0.0.1",
        port: int = 0,
        tls_cert: str = "",
        tls_key: str = "",
    ):
        self.core = core
        self.host = host
        self.port = port
        self.ssl_context: ssl.SSLContext | None = None
        if tls_cert:
            self.ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ssl_context.load_cert_chain(tls_cert, tls_key)
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="feedback-http")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://{self.host}:{self.port}"

    # ---- lifecycle --------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.core.max_request_bytes)
        app.add_routes(
            [
                web.get("/healthz", self.healthz),
                web.get("/v1/stats", self.api(self._stats)),
                web.post("/v1/publish", self.api(self._publish)),
                web.get("/v1/pending", self.api(self._pending)),
                web.post("/v1/ratings", self.api(self._submit)),
                web.post("/v1/collect", self.api(self._collect)),
                web.get("/", self.index),
                web.get("/rate", self.rate_page),
                web.post("/rate", self.rate_submit),
                web.get("/static/rate.css", self.stylesheet),
            ]
        )
        return app

    def start(self, timeout_s: float = 10.0) -> HttpGateway:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="feedback-http-loop", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError(f"HTTP gateway did not start within {timeout_s} s")
        if isinstance(self._error, OSError):
            raise ConfigError(
                f"feedback.http_port: cannot listen on {self.host}:{self.port}: {self._error}"
            )
        if self._error is not None:
            raise self._error
        return self

    def _serve(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            self._runner = web.AppRunner(self.app(), access_log=None)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context)
            loop.run_until_complete(site.start())
            self.port = self._runner.addresses[0][1]
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self._runner.cleanup())
        loop.close()

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ---- helpers ----------------------------------------------------------------------------

    async def _call(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _token(self, request: web.Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            return auth[7:].strip()
        return request.cookies.get(TOKEN_COOKIE)

    async def _json_body(self, request: web.Request) -> dict:
        self.core.check_size(request.content_length)
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise PayloadTooLarge(
                "body", f"over feedback.max_request_bytes={self.core.max_request_bytes}"
            ) from None
        try:
            body = json.loads(raw or b"{}")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidInput("body", f"is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise InvalidInput("body", "must be a JSON object")
        return body

    def api(self, handler):
        """Wrap a JSON handler: check the token, map errors to statuses, count them."""

        async def wrapped(request: web.Request) -> web.Response:
            try:
                self.core.authorize(self._token(request))
                return web.json_response(await handler(request))
            except RewardLoopError as exc:
                self.core.count(exc)
                body = {"error": str(exc), "field": getattr(exc, "field", "")}
                return web.json_response(body, status=http_status(exc))
            except Exception as exc:  # noqa: BLE001 - a bug must not take the server down
                self.core.count(exc)
                return web.json_response(
                    {"error": f"internal error: {type(exc).__name__}"}, status=500
                )

        return wrapped

    @staticmethod
    def _int(request: web.Request, name: str, default: int) -> int:
        raw = request.query.get(name, "")
        try:
            return int(raw) if raw else default
        except ValueError:
            raise InvalidInput(name, f"must be an integer, got {raw!r}") from None

    # ---- JSON API ---------------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "SERVING"})

    async def _stats(self, request):
        return await self._call(self.core.stats)

    async def _publish(self, request):
        body = await self._json_body(request)
        return await self._call(
            self.core.publish, body.get("items"), str(body.get("publisher") or "")
        )

    async def _pending(self, request):
        items = await self._call(
            self.core.pending, self._int(request, "limit", 20), request.query.get("rater", "")
        )
        return {"items": [it.to_json() for it in items]}

    async def _submit(self, request):
        b = await self._json_body(request)
        args = (
            b.get("item_id"),
            b.get("value"),
            b.get("rater", ""),
            b.get("idempotency_key", ""),
            b.get("stars", 0),
        )
        res = await self._call(self.core.submit, *args)
        return res.to_json()

    async def _collect(self, request):
        b = await self._json_body(request)
        outs = await self._call(
            self.core.collect, b.get("publisher", ""), b.get("ack_ids", []), b.get("limit", 0)
        )
        return {"outcomes": [o.to_json() for o in outs]}

    # ---- the rating page --------------------------------------------------------------------

    def _page_response(self, text: str, status: int = 200) -> web.Response:
        return web.Response(
            text=text, status=status, content_type="text/html", headers=SECURITY_HEADERS
        )

    def _set_cookie(self, resp: web.StreamResponse, name: str, value: str) -> None:
        resp.set_cookie(
            name,
            value,
            max_age=YEAR_S,
            httponly=True,
            samesite="Strict",
            secure=self.ssl_context is not None,
            path="/",
        )

    @staticmethod
    def _redirect(location: str) -> web.Response:
        return web.Response(status=303, headers={"Location": location, **SECURITY_HEADERS})

    async def index(self, request: web.Request) -> web.Response:
        return self._redirect("/rate")

    async def rate_page(self, request: web.Request) -> web.StreamResponse:
        scale = request.query.get("scale", "like")
        given = request.query.get("token")
        if given is not None:  # a sign-in link: keep the token in a cookie, drop it from the URL
            try:
                self.core.authorize(given)
            except RewardLoopError as exc:
                self.core.count(exc)
                return self._page_response(render_unauthorized(), status=401)
            resp = self._redirect(f"/rate?scale={'stars' if scale == 'stars' else 'like'}")
            self._set_cookie(resp, TOKEN_COOKIE, given)
            return resp
        try:
            self.core.authorize(self._token(request))
        except RewardLoopError as exc:
            self.core.count(exc)
            return self._page_response(render_unauthorized(), status=401)
        rater = request.query.get("rater") or request.cookies.get(RATER_COOKIE, "")
        if not RATER_RE.match(rater):
            rater = f"r-{secrets.token_hex(6)}"
        items = await self._call(self.core.pending, 20, "")
        resp = self._page_response(render_page(items, rater, scale, request.query.get("msg", "")))
        self._set_cookie(resp, RATER_COOKIE, rater)
        return resp

    async def rate_submit(self, request: web.Request) -> web.StreamResponse:
        try:
            self.core.authorize(self._token(request))
            self.core.check_size(request.content_length)
        except RewardLoopError as exc:
            self.core.count(exc)
            return self._page_response(render_unauthorized(), status=http_status(exc))
        form = await request.post()
        scale = "stars" if form.get("scale") == "stars" else "like"
        rater = request.cookies.get(RATER_COOKIE, "")
        msg = "invalid"
        try:
            value = float(form["value"]) if "value" in form else None
            stars = int(form.get("stars", 0) or 0)
            res = await self._call(
                self.core.submit, str(form.get("item_id", "")), value, rater, "", stars
            )
            msg = "thanks" if res.stored else "late"
        except NotFound as exc:
            self.core.count(exc)
            msg = "unknown"
        except (RewardLoopError, ValueError) as exc:
            self.core.count(
                exc if isinstance(exc, RewardLoopError) else InvalidInput("form", str(exc))
            )
        return self._redirect(f"/rate?scale={scale}&msg={msg}")

    async def stylesheet(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC_DIR / "rate.css", headers={"Cache-Control": "max-age=3600"})
