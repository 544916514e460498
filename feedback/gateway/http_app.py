"""The gateway's HTTP face: the JSON API (same calls as gRPC) and the rating page.

    GET  /healthz                     -> {"status": "SERVING"}            (no token needed)
    GET  /v1/stats                    -> counters
    POST /v1/publish  {"items": [...], "publisher": str}
    GET  /v1/pending?limit=20&rater=r
    POST /v1/ratings  {"item_id", "value" | "stars", "rater", "idempotency_key"}
    POST /v1/collect  {"publisher", "ack_ids": [...], "limit"}
    GET  /rate[?scale=like|stars][&token=T]   the rating page;  POST /rate   its forms

Errors answer `{"error": message, "field": name}` with the status of `rewardloop.errors`
(the page answers HTML). Bodies, forms and query values are read through `bad_input` and
one middleware maps every `RewardLoopError` to its status and counts it; anything else is
a bug: logged, counted as `internal` and answered 500.
The bearer token comes from `Authorization: Bearer <token>` or, for a person using the page,
from an HttpOnly SameSite=Strict cookie set when they open the link with `?token=`. The
aiohttp app runs on its own event loop in its own thread (`start()` / `stop()`); store calls
run on a small thread pool so a slow disk never stalls health checks.
"""

from __future__ import annotations

import logging
import re
import secrets
import ssl

from aiohttp import HttpVersion11, web

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

from .bad_input import ServerLog, parse_json_object
from .core import RATER_RE, FeedbackCore
from .page import (
    SECURITY_HEADERS,
    STATIC_DIR,
    render_bad_request,
    render_page,
    render_unauthorized,
)

TOKEN_COOKIE, RATER_COOKIE = "rl_token", "rl_rater"
YEAR_S = 365 * 86400
INT_RE = r"-?[0-9]{1,9}"
log = logging.getLogger(__name__)


class HttpGateway(ThreadedHttpApp):
    """aiohttp server for a FeedbackCore on its own loop thread; port 0 picks a free port."""

    PORT_KEY, NAME, THREAD = "feedback.http_port", "HTTP gateway", "feedback-http"

    def __init__(
        self,
        core: FeedbackCore,
        host: str = "127.0.0.1",
        port: int = 0,
        tls_cert: str = "",
        tls_key: str = "",
    ):
        self.core = core
        context = None
        if tls_cert:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls_cert, tls_key)
        self._setup_http(host, port, 4, ssl_context=context, logger=ServerLog(core.count))

    # ---- lifecycle --------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.core.max_request_bytes, middlewares=[self._errors]
        )
        routes = [
            ("GET", "/healthz", self.healthz),
            ("GET", "/v1/stats", self.api(self._stats)),
            ("POST", "/v1/publish", self.api(self._publish)),
            ("GET", "/v1/pending", self.api(self._pending)),
            ("POST", "/v1/ratings", self.api(self._submit)),
            ("POST", "/v1/collect", self.api(self._collect)),
            ("GET", "/", self.index),
            ("GET", "/rate", self.rate_page),
            ("POST", "/rate", self.rate_submit),
            ("GET", "/static/rate.css", self.stylesheet),
        ]
        self._allowed: dict[str, set[str]] = {}
        for method, path, handler in routes:
            self._allowed.setdefault(path, {"HEAD"} if method == "GET" else set()).add(method)
            add = app.router.add_get if method == "GET" else app.router.add_post  # GET: + HEAD
            add(path, handler, expect_handler=self._expect)
        # the rest, last: our own 404 / 405 (aiohttp's would skip `_expect` below)
        app.router.add_route("*", "/{tail:.*}", self.no_route, expect_handler=self._expect)
        return app

    # ---- helpers ----------------------------------------------------------------------------

    async def _call(self, fn, *args):
        return await self._in_pool(fn, *args)

    def _token(self, request: web.Request) -> str | None:
        given = bearer(request.headers.get("Authorization"))
        return given if given is not None else request.cookies.get(TOKEN_COOKIE)

    async def _read(self, request: web.Request) -> bytes:
        """The whole body, within feedback.max_request_bytes, decoded from its Content-Encoding."""
        self.core.check_size(request.content_length)
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise PayloadTooLarge(
                "body", f"over feedback.max_request_bytes={self.core.max_request_bytes}"
            ) from None
        except web.RequestPayloadError as exc:  # bad Content-Encoding, a stream cut short
            why = str(exc).splitlines()[-1].strip()
            raise InvalidInput("body", f"could not be read: {why}") from None
        except ConnectionResetError:  # the client hung up mid-body; nobody reads the answer
            raise InvalidInput("body", "was cut short: the client hung up mid-message") from None

    async def _json_body(self, request: web.Request) -> dict:
        return parse_json_object(await self._read(request))

    async def _form(self, request: web.Request) -> dict[str, str]:
        """The page's form fields (urlencoded or multipart); files and bad bodies are refused."""
        await self._read(request)  # size, encoding; post() then parses the cached bytes
        try:
            form = await request.post()
        except (ValueError, LookupError) as exc:  # undecodable, bad boundary, unknown charset
            raise InvalidInput("body", f"is not a form: {type(exc).__name__}") from None
        fields = {}
        for name, value in form.items():
            if not isinstance(value, str):
                raise InvalidInput(name, "must be a form field, not a file")
            fields.setdefault(name, value)
        return fields

    @web.middleware
    async def _errors(self, request: web.Request, handler) -> web.StreamResponse:
        """Every route's errors: the status of `rewardloop.errors`, counted; bugs are 500s."""
        try:
            return await handler(request)
        except RewardLoopError as exc:
            return self._refuse(request, exc, http_status(exc))
        except web.HTTPException as exc:  # aiohttp's own (a missing static file, ...)
            if exc.status >= 400:
                self.core.count(InvalidInput("request", exc.reason))
            raise
        except Exception as exc:  # noqa: BLE001 - a bug: logged, counted, the server lives on
            self.core.count(exc)
            log.exception("feedback gateway: internal error on %s %s", request.method, request.path)
            return web.json_response({"error": f"internal error: {type(exc).__name__}"}, status=500)

    def _refuse(self, request: web.Request, exc: RewardLoopError, status: int) -> web.Response:
        """Count `exc`; answer JSON on the API, a fixed page on the rating page's paths."""
        self.core.count(exc)
        if request.path.startswith("/v1/"):
            body = {"error": str(exc), "field": getattr(exc, "field", "")}
            return web.json_response(body, status=status, headers=SECURITY_HEADERS)
        unauthorized = isinstance(exc, Unauthenticated)
        page = render_unauthorized() if unauthorized else render_bad_request(status)
        return self._page_response(page, status=status)

    async def _expect(self, request: web.Request) -> web.StreamResponse | None:
        """`Expect: 100-continue` continues; any other value is a counted 417 (aiohttp's own
        answer echoes the value and fails with a 500 on bytes that are not ASCII)."""
        if request.version < HttpVersion11:
            return None
        if request.headers.get("Expect", "").lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0
            return None
        return self._refuse(request, InvalidInput("Expect", "only 100-continue is known"), 417)

    async def no_route(self, request: web.Request) -> web.StreamResponse:
        allowed = self._allowed.get(request.path)
        if allowed is None:
            raise NotFound(f"path: no route {request.path[:100]!r}")
        why = InvalidInput("method", f"{request.method[:20]!r} is not one of {sorted(allowed)}")
        resp = self._refuse(request, why, 405)
        resp.headers["Allow"] = ", ".join(sorted(allowed))
        return resp

    def api(self, handler):
        """Wrap a JSON handler: check the token, answer JSON (errors: see `_errors`)."""

        async def wrapped(request: web.Request) -> web.Response:
            self.core.authorize(self._token(request))
            return web.json_response(await handler(request))

        return wrapped

    @staticmethod
    def _int(request: web.Request, name: str, default: int) -> int:
        raw = request.query.get(name, "")
        if not raw:
            return default
        if not re.fullmatch(INT_RE, raw):
            raise InvalidInput(name, f"must be an integer, got {raw[:40]!r}")
        return int(raw)

    # ---- JSON API ---------------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "SERVING"})

    async def _stats(self, request):
        return await self._call(self.core.stats)

    async def _publish(self, request):
        body = await self._json_body(request)
        return await self._call(self.core.publish, body.get("items"), body.get("publisher"))

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
        self.core.authorize(self._token(request))
        form = await self._form(request)
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
