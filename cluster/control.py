"""The run's control endpoint: a small HTTP/JSON server in the driver, for `rewardloop scale`.

Why HTTP in the driver (and not a named Ray actor): the CLI then needs no Ray client, no Ray
address and no Ray version match, works from any machine that reaches the port, and the request
lands in the process that owns the pool. The server only records what was asked; the driver's
poll loop (`cluster/scaling.py`, called from `Run._poll_once`) applies it and publishes the
pool's state back, so no pool code runs on a server thread.

    GET  /health                 200 {"status": "serving"}            (no token: for probes)
    GET  /workers                200 {"target", "running", "starting", "retiring", ...}
    POST /workers {"workers": N} 202 {"requested": N, ...state}; 400 names the bad field
    POST /stop                   202: training ends now, then the run saves and evaluates as
                                 at learner.max_steps (`rewardloop stop RUN_DIR`)
    any other path               404

Every call but /health carries `Authorization: Bearer <learner.token>` when the run has a
token (401 otherwise, counted in `unauthenticated`); a non-loopback `cluster.control_host`
without a token refuses to start unless `learner.allow_insecure`. Requests are small (a body
over MAX_BODY bytes: 413) and each connection has a socket timeout, so a stuck client cannot
hold a thread. `stop()` shuts the server down and closes the socket.
"""

from __future__ import annotations

import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from rewardloop.auth import bearer, is_loopback
from rewardloop.errors import ConfigError
from rewardloop.metrics import stop_threaded_server

MAX_BODY = 4096
SOCKET_TIMEOUT_S = 10.0
MAX_WORKERS = 64
"""The most rollout workers `rewardloop scale` may ask for (the learner's weight long-poll
threads, cluster/actors.py WEIGHT_WAITERS)."""


class ScaleRequests:
    """What the control server and the driver share: the newest request and the pool's state."""

    def __init__(self, max_workers: int = MAX_WORKERS):
        self.max_workers = max_workers
        self._lock = threading.Lock()
        self._wanted: int | None = None
        self._state: dict = {}
        self.closing = False
        self.stop_requested = threading.Event()

    def request(self, workers: int) -> None:
        with self._lock:
            self._wanted = workers

    def take(self) -> int | None:
        """The newest request not yet taken (None when there is none); the driver applies it."""
        with self._lock:
            wanted, self._wanted = self._wanted, None
            return wanted

    def publish(self, state: dict) -> None:
        with self._lock:
            self._state = dict(state)

    def state(self) -> dict:
        with self._lock:
            pending = {} if self._wanted is None else {"requested": self._wanted}
            return {**self._state, **pending}


class ControlServer:
    """Serves `requests` on (host, port); port 0 picks a free one."""

    def __init__(
        self,
        requests: ScaleRequests,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str = "",
        allow_insecure: bool = False,
    ):
        if not token and not allow_insecure and not is_loopback(host):
            raise ConfigError(
                f"cluster.control_host={host} is reachable from other machines but learner.token "
                "is empty: set learner.token (the control endpoint takes the same bearer token), "
                "keep cluster.control_host=127.0.0.1, or --set learner.allow_insecure=true"
            )
        self.requests = requests
        self.host, self.port = host, port
        self._token = token.encode()
        self.unauthenticated = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}" if self._httpd is not None else ""

    def start(self) -> str:
        """Serve on a daemon thread; returns the base URL. A taken port -> ConfigError."""
        handler = type("Handler", (_Handler,), {"control": self})
        try:
            self._httpd = ThreadingHTTPServer((self.host, self.port), handler)
        except OSError as exc:
            raise ConfigError(
                f"cluster.control_port: cannot serve on {self.host}:{self.port} "
                f"({exc.strerror or exc}); choose another port, 0 for a free one, or -1 for none"
            ) from None
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_port
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="control", daemon=True
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving (calls in progress finish) and close the socket; safe to call twice."""
        self.requests.closing = True
        if self._httpd is None:
            return
        stop_threaded_server(self._httpd, self._thread)
        self._httpd = self._thread = None

    def authorized(self, header: str | None) -> bool:
        if not self._token:
            return True
        given = bearer(header)
        ok = given is not None and hmac.compare_digest(given.encode(), self._token)
        if not ok:
            self.unauthenticated += 1
        return ok


class _Handler(BaseHTTPRequestHandler):
    control: ControlServer  # set on the per-server subclass
    timeout = SOCKET_TIMEOUT_S
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args) -> None:  # noqa: A002 - no access log on stderr
        return

    def _reply(self, status: int, body: dict) -> None:
        data = (json.dumps(body, sort_keys=True) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _allowed(self) -> bool:
        if self.control.authorized(self.headers.get("Authorization")):
            return True
        self._reply(401, {"error": "missing or wrong bearer token (learner.token)"})
        return False

    def do_GET(self) -> None:  # noqa: N802 - http.server's method name
        if self.path == "/health":
            self._reply(200, {"status": "stopping" if self.control.requests.closing else "serving"})
        elif self.path == "/workers":
            if self._allowed():
                self._reply(200, self.control.requests.state())
        else:
            self._reply(404, {"error": f"no such path {self.path}; use /health or /workers"})

    def do_POST(self) -> None:  # noqa: N802 - http.server's method name
        if self.path not in ("/workers", "/stop"):
            self._reply(404, {"error": f"no such path {self.path}; POST /workers or /stop"})
            return
        if not self._allowed():
            return
        requests = self.control.requests
        if self.path == "/stop":
            requests.stop_requested.set()
            self._reply(202, {"stopping": True})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True
            self._reply(413, {"error": f"body must be 0..{MAX_BODY} bytes of JSON"})
            return
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except (ValueError, OSError):
            self._reply(400, {"error": 'body must be JSON like {"workers": 3}'})
            return
        workers = body.get("workers") if isinstance(body, dict) else None
        if not isinstance(workers, int) or isinstance(workers, bool):
            self._reply(400, {"error": f"workers: must be an integer, got {workers!r}"})
            return
        if not 1 <= workers <= requests.max_workers:
            self._reply(
                400, {"error": f"workers: must be in 1..{requests.max_workers}, got {workers}"}
            )
            return
        if requests.closing:
            self._reply(503, {"error": "the run is stopping"})
            return
        requests.request(workers)
        self._reply(202, requests.state())
