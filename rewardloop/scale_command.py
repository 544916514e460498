"""`rewardloop scale RUN_DIR [--workers N]`: change (or show) a running run's rollout workers;
`rewardloop stop RUN_DIR`: end its training now.

The run serves a control endpoint (cluster/control.py) and records its URL as `control` in
`<RUN_DIR>/endpoints.json`. This command reads it, sends `POST /workers {"workers": N}` with the
run's `learner.token` as a bearer token (from the run's config.json: `env:NAME` is read from
this process's environment), then follows `GET /workers` until the pool holds N workers that are
all up and none still retiring (or `--wait` seconds pass). Every call has a deadline. It prints
the run's scaling state as JSON. Exit 0 when the pool reached N (or, without --workers, when
the run answered); 1 when the run is not reachable, refused, or did not get there in time.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from rewardloop.auth import resolve_token
from rewardloop.errors import InvalidInput, RewardLoopError, Unavailable
from rewardloop.metrics import ENDPOINTS_FILE

POLL_S = 0.5  # between looks at the pool's state while it changes


def control_url(run_dir: str | Path) -> str:
    """The run's control URL from endpoints.json; Unavailable when there is none."""
    path = Path(run_dir) / ENDPOINTS_FILE
    try:
        url = json.loads(path.read_text()).get("control", "")
    except FileNotFoundError:
        raise Unavailable(
            f"{path} not found: is {run_dir} the directory of a started run?"
        ) from None
    except (OSError, ValueError) as exc:
        raise Unavailable(f"{path}: unreadable ({exc})") from None
    if not url:
        raise Unavailable(
            f"{path} names no control endpoint: the run has ended, or it runs with "
            "cluster.control_port=-1"
        )
    return url


def run_token(run_dir: str | Path) -> str:
    """The bearer token of the run: its config.json learner.token, `env:NAME` resolved here."""
    try:
        cfg = json.loads((Path(run_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return ""
    token = cfg.get("learner", {}).get("token", "")
    return resolve_token(token, "learner.token") if token else ""


def call(
    method: str, url: str, token: str, body: dict | None, timeout_s: float
) -> tuple[int, dict]:
    """(HTTP status, JSON body) of one call; Unavailable when nothing answered in time."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return exc.code, {"error": exc.reason}
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise Unavailable(
            f"{url}: {getattr(exc, 'reason', exc)} (is the run still running?)"
        ) from None


def settled(state: dict, workers: int) -> bool:
    """The pool holds `workers`, all up, none retiring, and no request is waiting."""
    return (
        state.get("target") == workers
        and state.get("running") == workers
        and not state.get("retiring")
        and "requested" not in state
    )


def scale(
    run_dir: str | Path, workers: int | None, wait_s: float = 300.0, timeout_s: float = 10.0
) -> dict:
    """Ask the run for `workers` (None: only read the state) and follow it; the last state.

    Raises Unavailable (not reachable, or not there within wait_s) or InvalidInput (refused)."""
    base = control_url(run_dir)
    token = run_token(run_dir)
    if workers is None:
        status, state = call("GET", f"{base}/workers", token, None, timeout_s)
    else:
        status, state = call("POST", f"{base}/workers", token, {"workers": workers}, timeout_s)
    if status >= 400:
        raise InvalidInput(
            "workers", f"the run refused (HTTP {status}): {state.get('error', state)}"
        )
    deadline = time.monotonic() + wait_s
    while workers is not None and not settled(state, workers):
        if state.get("error") and "requested" not in state:
            raise Unavailable(f"the run could not scale to {workers}: {state['error']}")
        if time.monotonic() >= deadline:
            raise Unavailable(
                f"the run has not reached {workers} workers within --wait {wait_s:g}s: {state}"
            )
        time.sleep(POLL_S)  # the pool changes between the driver's polls; look again
        status, state = call("GET", f"{base}/workers", token, None, timeout_s)
        if status >= 400:
            raise Unavailable(f"GET /workers: HTTP {status}: {state.get('error', state)}")
    return state


def stop(run_dir: str | Path, timeout_s: float = 10.0) -> dict:
    """Ask the run to end training now (it then saves and evaluates as at max_steps)."""
    status, body = call("POST", f"{control_url(run_dir)}/stop", run_token(run_dir), {}, timeout_s)
    if status >= 400:
        raise InvalidInput("stop", f"the run refused (HTTP {status}): {body.get('error', body)}")
    return body


def stop_command(run_dir: str, timeout_s: float) -> int:
    try:
        body = stop(run_dir, timeout_s)
    except RewardLoopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(body, sort_keys=True))
    return 0


def command(
    run_dir: str, workers: int | None, wait_s: float, timeout_s: float, out=None, err=None
) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        state = scale(run_dir, workers, wait_s, timeout_s)
    except RewardLoopError as exc:
        print(f"error: {exc}", file=err)
        return 1
    print(json.dumps(state, sort_keys=True), file=out)
    return 0


def add_parser(sub) -> None:
    """`rewardloop scale` on the CLI's subparsers (rewardloop/cli.py registers it)."""
    scale_parser = sub.add_parser("scale", help="change (or show) a running run's rollout workers")
    scale_parser.add_argument(
        "run_dir", help="the run directory (endpoints.json names its control)"
    )
    scale_parser.add_argument("--workers", type=int, help="rollout workers to have (omit: show)")
    scale_parser.add_argument(
        "--wait", type=float, default=300.0, help="seconds to wait for the pool to get there"
    )
    scale_parser.add_argument("--timeout", type=float, default=10.0, help="seconds per call")
    scale_parser.set_defaults(
        func=lambda args: command(args.run_dir, args.workers, args.wait, args.timeout)
    )
    stop_parser = sub.add_parser(
        "stop", help="end a running run's training now (it saves and evaluates as at max_steps)"
    )
    stop_parser.add_argument("run_dir", help="the run directory (endpoints.json names its control)")
    stop_parser.add_argument("--timeout", type=float, default=10.0, help="seconds for the call")
    stop_parser.set_defaults(func=lambda args: stop_command(args.run_dir, args.timeout))
