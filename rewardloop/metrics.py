"""Live metrics: a Prometheus `/metrics` server per process part, and a scrape for `status`.

Each server owns one `CollectorRegistry` (never prometheus_client's global one), so several
servers in one process (tests, a learner beside a gateway) do not clash. What a server exports
comes from collectors registered on that registry: `learner/live_metrics.py` for the learner,
`feedback/gateway/metrics.py` for the gateway; the names are listed in the README (Live
metrics). The endpoint serves counts and gauges only (no item text, ids or tokens), has no
token of its own, and binds its own `*.metrics_host` (loopback by default), apart from the
service's host.

    server = MetricsServer(registry, host="127.0.0.1", port=0)
    url = server.start()          # "http://127.0.0.1:PORT/metrics"
    rows = scrape(url)            # [(name, labels, value), ...]
    server.stop()
"""

from __future__ import annotations

import json
import math
import os
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from rewardloop.errors import ConfigError

PREFIX = "rewardloop_"
OFF = -1  # a *.metrics_port of -1 turns the endpoint off
ENDPOINTS_FILE = "endpoints.json"  # in the run directory: {"learner_metrics": URL, ...}


def record_endpoints(run_dir: str | Path, **endpoints: str) -> Path:
    """Merge `endpoints` into <run_dir>/endpoints.json (read-modify-write, other keys kept)."""
    path = Path(run_dir) / ENDPOINTS_FILE
    try:
        current = json.loads(path.read_text())
    except (OSError, ValueError):
        current = {}
    current.update(endpoints)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)  # readers never see half a file
    return path


class MetricsServer:
    """`/metrics` of one registry over HTTP on (host, port); port 0 picks a free one, OFF (-1)
    serves nothing (`start()` and `url` then give "")."""

    def __init__(
        self, registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 0, what: str = ""
    ):
        self.registry = registry
        self.what = what or "metrics_port"  # the config key a bind failure names
        self.host = host
        self.port = port
        self._httpd = None
        self._thread = None

    def start(self) -> str:
        """Serve on a daemon thread; returns the URL to scrape. A taken port -> ConfigError."""
        if self.port == OFF:
            return ""
        try:
            self._httpd, self._thread = start_http_server(
                self.port, self.host, registry=self.registry
            )
        except OSError as exc:
            raise ConfigError(
                f"{self.what}: cannot serve /metrics on {self.host}:{self.port} ({exc.strerror or exc}); "
                f"choose another port, 0 for a free one, or -1 to turn it off"
            ) from None
        self.port = self._httpd.server_port
        return self.url

    @property
    def url(self) -> str:
        """The URL to scrape once started ("" before a port is bound, or when OFF)."""
        if self.port in (0, OFF):
            return ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice or before start()."""
        if self._httpd is None:
            return
        stop_threaded_server(self._httpd, self._thread)
        self._httpd = self._thread = None


def stop_threaded_server(httpd, thread) -> None:
    """Stop a stdlib HTTP server serving on `thread`: calls in progress finish, the socket is
    closed, and the thread is waited for (bounded)."""
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5.0)


class ScrapeError(Exception):
    """The endpoint did not answer (not running, refused, timed out) or answered badly."""


def scrape(url: str, timeout_s: float = 5.0) -> list[tuple[str, dict, float]]:
    """The `rewardloop_*` samples at `url` as (name, labels, value), in exposition order."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            text = resp.read().decode("utf-8")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ScrapeError(f"{url}: {reason}") from None
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as exc:
        raise ScrapeError(f"{url}: not Prometheus text ({exc})") from None
    return [
        (s.name, dict(s.labels), s.value)
        for f in families
        if f.name.startswith(PREFIX)
        for s in f.samples
        if not s.name.endswith("_created")
    ]


def fmt(value: float) -> str:
    """A sample value for a table: integers without a point, others to 4 significant digits."""
    if math.isnan(value):
        return "nan"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"
