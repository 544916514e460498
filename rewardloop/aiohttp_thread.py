"""An aiohttp application on its own event loop in its own thread, with a thread pool for
blocking calls: the lifecycle the feedback gateway's HTTP face and the serve API share.

A subclass defines `app()` (its routes and middlewares) and `PORT_KEY` (the config key named
when the port cannot be bound); `start()` returns once the site listens (port 0 picks a free
port, read back into `self.port`) or raises what went wrong; `stop()` is bounded.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from rewardloop.errors import ConfigError


class ThreadedHttpApp:
    PORT_KEY = ""  # e.g. "feedback.http_port"
    NAME = "HTTP server"  # in start()'s errors
    THREAD = "http"  # the loop thread is THREAD-loop, the pool's threads THREAD_N

    def _setup_http(
        self,
        host: str,
        port: int,
        pool_workers: int,
        ssl_context: ssl.SSLContext | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.ssl_context = ssl_context
        self._logger = logger
        self._pool = ThreadPoolExecutor(max_workers=pool_workers, thread_name_prefix=self.THREAD)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def app(self) -> web.Application:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=f"{self.THREAD}-loop", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError(f"{self.NAME} did not start within {timeout_s} s")
        if isinstance(self._error, OSError):
            raise ConfigError(
                f"{self.PORT_KEY}: cannot listen on {self.host}:{self.port}: {self._error}"
            )
        if self._error is not None:
            raise self._error
        return self

    def _serve(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            extra = {} if self._logger is None else {"logger": self._logger}
            runner = web.AppRunner(self.app(), access_log=None, **extra)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, self.host, self.port, ssl_context=self.ssl_context)
            loop.run_until_complete(site.start())
            self.port = runner.addresses[0][1]
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _in_pool(self, fn, *args) -> asyncio.Future:
        """Run a blocking call on the pool (a slow disk or model never stalls the loop)."""
        return asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
