"""`rewardloop feedback serve | forget`: run the feedback gateway, honour a rater's deletion.

    python -m rewardloop.feedback.gateway_main serve --port 0 --grpc-port 0 --store /tmp/fb.sqlite3
    python -m rewardloop.feedback.gateway_main forget r-3f2a9c

`serve(cfg, args)` and `forget(cfg, rater)` are what `rewardloop/cli.py` calls; `cfg` is a
RunConfig (or a FeedbackConfig). `serve` prints the addresses, optionally writes them as JSON
to `--ready-file` (for scripts and tests), and stops gracefully on SIGINT/SIGTERM or after
`--duration-s`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import threading
from pathlib import Path

from rewardloop.config import FeedbackConfig, load_config

from .gateway import FeedbackGateway
from .store import FeedbackStore


def _feedback_cfg(cfg, args=None) -> FeedbackConfig:
    fb = cfg.feedback if hasattr(cfg, "feedback") else cfg
    changes = {}
    for arg, key in (
        ("host", "host"),
        ("port", "http_port"),
        ("http_port", "http_port"),
        ("grpc_port", "grpc_port"),
        ("store", "store_path"),
    ):
        value = getattr(args, arg, None) if args is not None else None
        if value is not None:
            changes[key] = value
    return dataclasses.replace(fb, **changes) if changes else fb


def serve(cfg, args=None) -> int:
    """Run the gateway until SIGINT/SIGTERM (or `args.duration_s`); returns an exit code."""
    fb = _feedback_cfg(cfg, args)
    gateway = FeedbackGateway(fb)
    stop = threading.Event()
    addresses = gateway.start()
    try:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
        print(
            f"feedback gateway: rating page {addresses['rate_url']}  gRPC {addresses['grpc_target']}"
            f"  store {fb.store_path}  token {'required' if fb.token else 'NOT set (open to anyone who can connect)'}",
            flush=True,
        )
        ready_file = getattr(args, "ready_file", None)
        if ready_file:
            tmp = Path(ready_file).with_suffix(".tmp")
            tmp.write_text(json.dumps(addresses))
            tmp.replace(ready_file)
        duration = getattr(args, "duration_s", None)
        stop.wait(duration if duration else None)
    finally:
        gateway.stop()
        print("feedback gateway: stopped", flush=True)
    return 0


def forget(cfg, rater: str) -> int:
    """Delete every rating of `rater`, refuse their later ones; returns ratings deleted."""
    fb = _feedback_cfg(cfg)
    store = FeedbackStore.from_config(fb)
    try:
        n = store.forget(rater)
    finally:
        store.close()
    print(
        f"forgot rater {rater}: {n} rating(s) deleted from {fb.store_path}; later ratings from them are refused"
    )
    return n


def add_arguments(sub: argparse._SubParsersAction, parents: tuple = ()) -> None:
    """Add `serve` and `forget` subcommands to a parser (the CLI's `feedback` group)."""
    s = sub.add_parser(
        "serve", parents=list(parents), help="run the feedback gateway (gRPC + HTTP + rating page)"
    )
    s.add_argument("--host", help="interface to bind (feedback.host)")
    s.add_argument(
        "--port",
        "--http-port",
        dest="port",
        type=int,
        help="HTTP port, 0 = free (feedback.http_port)",
    )
    s.add_argument("--grpc-port", type=int, help="gRPC port, 0 = free (feedback.grpc_port)")
    s.add_argument("--store", help="SQLite store path (feedback.store_path)")
    s.add_argument("--ready-file", help="write the addresses as JSON here once serving")
    s.add_argument("--duration-s", type=float, help="stop after this many seconds")
    f = sub.add_parser(
        "forget", parents=list(parents), help="delete a rater's ratings and refuse their later ones"
    )
    f.add_argument("rater", help="the rater's pseudonymous id")
    f.add_argument("--store", help="SQLite store path (feedback.store_path)")


def main(argv: list[str] | None = None) -> int:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="YAML config file")
    common.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key"
    )
    parser = argparse.ArgumentParser(
        prog="rewardloop feedback", description=__doc__.splitlines()[0]
    )
    add_arguments(parser.add_subparsers(dest="command", required=True), parents=(common,))
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.set)
    if args.command == "serve":
        return serve(cfg, args)
    forget(_feedback_cfg(cfg, args), args.rater)
    return 0


if __name__ == "__main__":
    sys.exit(main())
