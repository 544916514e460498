"""The operator commands of a running `rewardloop serve`, over its authenticated admin API.

    rewardloop versions RUN_DIR                versions: status, served, rated, live reward
    rewardloop rollback RUN_DIR VERSION        make VERSION stable now (the learner follows)
    rewardloop pin RUN_DIR VERSION|none        serve only VERSION (no canaries) / unpin
    rewardloop forget RUN_DIR USER             delete USER's data, incl. the learner's buffer

The serve process writes its API address and a fresh admin token to
`RUN_DIR/serve_admin.json` (mode 0600); these commands read it and call `/admin/*` with it.
`rewardloop serve` itself is registered by cli.py (it starts Ray, so it lives in cluster/).
"""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request
from pathlib import Path

from rewardloop.errors import InvalidInput, NotFound, Unavailable

from .stack import ADMIN_FILE


def admin_call(run_dir: str, name: str, body: dict, timeout_s: float = 30.0) -> dict:
    path = Path(run_dir) / ADMIN_FILE
    try:
        admin = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise NotFound(f"run_dir: no running serve here ({path}: {exc})") from None
    req = urllib.request.Request(
        f"{admin['url']}/admin/{name}",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {admin['token']}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        message = json.loads(exc.read() or b"{}").get("error", {}).get("message", str(exc))
        raise (NotFound(message) if exc.code == 404 else InvalidInput("admin", message)) from None
    except (urllib.error.URLError, TimeoutError) as exc:
        raise Unavailable(f"serve at {admin['url']} did not answer: {exc}") from None


def _print(data) -> int:
    print(json.dumps(data, indent=2, sort_keys=True))
    return 0


def cmd_versions(args) -> int:
    snap = admin_call(args.run_dir, "versions", {}, args.timeout)
    if args.json:
        return _print(snap)
    print(f"stable v{snap['stable']}  canary {snap['canary']}  pinned {snap['pinned']}")
    print(f"{'version':>8} {'status':>12} {'served':>8} {'rated':>7} {'live reward':>12}")
    for v in snap["versions"]:
        reward = "-" if v["live_reward"] is None else f"{v['live_reward']:.3f}"
        print(f"{v['version']:>8} {v['status']:>12} {v['served']:>8} {v['rated']:>7} {reward:>12}")
    return 0


def _version(text: str) -> int | None:
    if text.lower() == "none":
        return None
    if not text.lstrip("v").isdigit():
        raise InvalidInput("VERSION", f"must be a version number like 3 or v3, got {text!r}")
    return int(text.lstrip("v"))


def cmd_rollback(args) -> int:
    return _print(admin_call(args.run_dir, "rollback", {"version": _version(args.version)}))


def cmd_pin(args) -> int:
    return _print(admin_call(args.run_dir, "pin", {"version": _version(args.version)}))


def cmd_forget(args) -> int:
    return _print(admin_call(args.run_dir, "forget", {"user": args.user}))


def add_arguments(sub) -> None:
    """Register versions / rollback / pin / forget on the `rewardloop` subparsers."""

    def run_dir(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("run_dir", help="the serve run's directory (its serve_admin.json)")
        p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for serve")
        return p

    v = run_dir(sub.add_parser("versions", help="a running serve's versions and live reward"))
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_versions)
    r = run_dir(sub.add_parser("rollback", help="make VERSION the stable version now"))
    r.add_argument("version")
    r.set_defaults(func=cmd_rollback)
    p = run_dir(sub.add_parser("pin", help="serve only VERSION (none = unpin)"))
    p.add_argument("version")
    p.set_defaults(func=cmd_pin)
    f = run_dir(
        sub.add_parser("forget", help="delete a user's served data and refuse their feedback")
    )
    f.add_argument("user")
    f.set_defaults(func=cmd_forget)
