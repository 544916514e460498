"""Client plumbing shared by the remote reward sources and the gateway clients.

`JsonClient` speaks JSON over HTTP with aiohttp on a private event loop thread, so a
synchronous worker gets real concurrency (a semaphore of `max_concurrency`), a total deadline
per attempt (`timeout_s` covers connect, send and the whole answer, so a trickling server is
cut off), retries with jittered exponential backoff on timeouts, connection errors, 408/429/5xx,
and an overall bound on every call: nothing here can hang a worker. The gRPC helpers do the
same for channels: `grpc://` or bare host:port is plaintext, `grpcs://` is TLS.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import random
import ssl
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
import grpc

from rewardloop.errors import (
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    RewardLoopError,
    RewardServiceError,
    Unauthenticated,
    Unavailable,
)

RETRY_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})
RETRY_GRPC = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED}
)


def backoff_s(attempt: int, base_s: float = 0.1, cap_s: float = 2.0) -> float:
    """Jittered exponential backoff before retry number `attempt` (1, 2, ...)."""
    return min(cap_s, base_s * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)


def call_budget_s(timeout_s: float, retries: int, base_s: float = 0.1, cap_s: float = 2.0) -> float:
    """The longest a call with these settings can take (plus a margin)."""
    return (retries + 1) * timeout_s + sum(min(cap_s, base_s * 2**i) for i in range(retries)) + 1.0


def snippet(raw: bytes | str, n: int = 200) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return text[:n] + ("..." if len(text) > n else "")


class HttpStatusError(RewardServiceError):
    """An HTTP answer that is not 200; `status` and the server's `message` are kept."""

    def __init__(self, text: str, status: int, message: str):
        super().__init__(text)
        self.status = status
        self.message = message


class LoopThread:
    """An asyncio loop running in a daemon thread; `run()` waits for a coroutine with a bound."""

    def __init__(self, name: str):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine, timeout_s: float, what: str) -> Any:
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout_s)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise Unavailable(f"{what}: no result within {timeout_s:.1f} s") from None

    def close(self, cleanup: Coroutine | None = None) -> None:
        if cleanup is not None and self.loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(cleanup, self.loop).result(2.0)
            except Exception:  # noqa: BLE001 - closing anyway
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(2.0)


class JsonClient:
    """JSON over HTTP(S) with deadlines, retries, backoff and a concurrency limit."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: dict | None = None,
        timeout_s: float = 10.0,
        retries: int = 3,
        max_concurrency: int = 4,
        ca_cert: str = "",
        what: str = "reward service",
    ):
        self.base_url = base_url.rstrip("/")
        self.headers = {str(k): str(v) for k, v in (headers or {}).items()}
        self.timeout_s = timeout_s
        self.retries = retries
        self.max_concurrency = max_concurrency
        self.what = what
        self.ssl: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=ca_cert) if ca_cert else True
        )
        self._loop = LoopThread(f"{what}-client")
        self._session: aiohttp.ClientSession | None = None
        self._sem: asyncio.Semaphore | None = None
        self.attempts = 0
        """HTTP attempts made, retries included (for tests and metrics)."""

    def _url(self, path: str) -> str:
        return self.base_url + path if path else self.base_url

    async def _ensure(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self.max_concurrency, ssl=self.ssl)
            self._session = aiohttp.ClientSession(headers=self.headers, connector=connector)
            self._sem = asyncio.Semaphore(self.max_concurrency)
        return self._session

    async def request_async(
        self, method: str, path: str, payload: Any = None, retries: int | None = None
    ) -> Any:
        session = await self._ensure()
        url = self._url(path)
        retries = self.retries if retries is None else retries
        last = ""
        for attempt in range(retries + 1):
            if attempt:
                await asyncio.sleep(backoff_s(attempt))
            try:
                async with self._sem:
                    self.attempts += 1
                    timeout = aiohttp.ClientTimeout(total=self.timeout_s)
                    async with session.request(method, url, json=payload, timeout=timeout) as resp:
                        raw = await resp.read()
                        status = resp.status
            except TimeoutError:
                last = f"no answer within timeout_s={self.timeout_s} s"
                continue
            except aiohttp.ClientError as exc:
                last = f"connection failed ({type(exc).__name__}: {exc})"
                continue
            if status == 200:
                try:
                    return json.loads(raw)
                except (UnicodeDecodeError, json.JSONDecodeError):
                    raise RewardServiceError(
                        f"{self.what} {url} answered invalid JSON: {snippet(raw)!r}"
                    ) from None
            message = _error_message(raw)
            last = f"answered HTTP {status}: {message}"
            if status not in RETRY_HTTP:
                raise HttpStatusError(f"{self.what} {url} {last}", status, message)
        raise RewardServiceError(
            f"{self.what} {url}: {last} (gave up after {retries + 1} attempts)"
        )

    def request(
        self, method: str, path: str, payload: Any = None, retries: int | None = None
    ) -> Any:
        """One call, bounded by its retry budget."""
        r = self.retries if retries is None else retries
        coro = self.request_async(method, path, payload, r)
        return self._loop.run(
            coro, call_budget_s(self.timeout_s, r), f"{self.what} {self._url(path)}"
        )

    def request_many(self, method: str, path: str, payloads: list[Any]) -> list[Any]:
        """Several calls at once (at most max_concurrency in flight); answers in order."""

        async def gather():
            return await asyncio.gather(*(self.request_async(method, path, p) for p in payloads))

        waves = -(-len(payloads) // self.max_concurrency)
        budget = waves * call_budget_s(self.timeout_s, self.retries)
        return self._loop.run(gather(), budget, f"{self.what} {self._url(path)}")

    def close(self) -> None:
        async def cleanup():
            if self._session is not None:
                await self._session.close()

        self._loop.close(cleanup())


def _error_message(raw: bytes) -> str:
    """The `error` of a JSON error body, else the start of the body."""
    try:
        body = json.loads(raw)
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return body["error"]
    except (UnicodeDecodeError, json.JSONDecodeError):
        pass
    return snippet(raw) or "(empty body)"


# ---- gRPC -----------------------------------------------------------------------------------


def parse_grpc_url(url: str) -> tuple[str, bool]:
    """`grpcs://h:p` -> ("h:p", True); `grpc://h:p` or `h:p` -> ("h:p", False)."""
    for scheme, tls in (("grpcs://", True), ("grpc://", False)):
        if url.startswith(scheme):
            return url[len(scheme) :].rstrip("/"), tls
    if "://" in url:
        raise InvalidInput(
            "reward.url", f"{url!r}: use grpc://host:port, grpcs://host:port or host:port"
        )
    return url, False


def open_channel(url: str, ca_cert: str = "", max_message_bytes: int = 64 << 20) -> grpc.Channel:
    target, tls = parse_grpc_url(url)
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        # gRPC's own reconnect backoff grows to 120 s, and a channel waiting it out fails every
        # call at once: capped, a reward service that comes back is used again within seconds
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 2000),
    ]
    if tls:
        roots = open(ca_cert, "rb").read() if ca_cert else None
        return grpc.secure_channel(
            target, grpc.ssl_channel_credentials(root_certificates=roots), options=options
        )
    return grpc.insecure_channel(target, options=options)


def grpc_metadata(headers: dict) -> tuple[tuple[str, str], ...]:
    """HTTP-style headers ({Authorization: Bearer x}) as gRPC metadata (lower-case keys)."""
    return tuple((str(k).lower(), str(v)) for k, v in headers.items())


GRPC_ERRORS: dict[grpc.StatusCode, Callable[[str], RewardLoopError]] = {
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.INVALID_ARGUMENT: lambda m: InvalidInput("request", m),
    grpc.StatusCode.RESOURCE_EXHAUSTED: lambda m: PayloadTooLarge("request", m),
}


def call_grpc(
    method: Callable,
    request: Any,
    *,
    timeout_s: float,
    retries: int,
    metadata: tuple = (),
    what: str,
    map_errors: bool = False,
) -> Any:
    """Call a unary stub method with a deadline, retrying UNAVAILABLE / DEADLINE_EXCEEDED.

    Other failures raise at once: mapped to rewardloop errors when `map_errors`, else as a
    RewardServiceError naming the status code.
    """
    last = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff_s(attempt))
        try:
            return method(request, timeout=timeout_s, metadata=metadata)
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""
            last = f"{code.name}: {details}"
            if code in RETRY_GRPC:
                continue
            if map_errors and code in GRPC_ERRORS:
                raise GRPC_ERRORS[code](details) from None
            raise RewardServiceError(f"{what} answered {last}") from None
    raise RewardServiceError(f"{what}: {last} (gave up after {retries + 1} attempts)")
