"""`rewardloop feedback serve | forget`: run the feedback gateway, honour a rater's deletion.

    rewardloop feedback serve --http-port 0 --grpc-port 0 --store /tmp/fb.sqlite3 --ready-file a.json
    rewardloop feedback forget r-3f2a9c --store /tmp/fb.sqlite3

`add_arguments` is the one definition of both subcommands' options; `rewardloop/cli.py` mounts
it under `feedback` (with its `--config`/`--set` as parents) and calls `command(cfg, args)`,
which returns the exit code. `serve` prints the addresses, optionally writes them as JSON to
`--ready-file` (for scripts and tests), and stops gracefully on SIGINT/SIGTERM or after
`--duration-s`. `forget` prints how many ratings it deleted. `cfg` is a RunConfig (or a
FeedbackConfig); the options given on the command line override its `feedback.*` keys.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import threading
from pathlib import Path

from rewardloop.config import FeedbackConfig

_OVERRIDES = (
    ("host", "host"),
    ("http_port", "http_port"),
    ("grpc_port", "grpc_port"),
    ("store", "store_path"),
)
"""(argument dest, feedback.* key) for the options that override the config."""


def feedback_config(cfg, args: argparse.Namespace | None = None) -> FeedbackConfig:
    """The `feedback` section of `cfg` with the command-line options of `args` applied."""
    fb = cfg.feedback if hasattr(cfg, "feedback") else cfg
    changes = {}
    for dest, key in _OVERRIDES:
        value = getattr(args, dest, None) if args is not None else None
        if value is not None:
            changes[key] = value
    return dataclasses.replace(fb, **changes) if changes else fb


def command(cfg, args: argparse.Namespace) -> int:
    """Run the subcommand `args.feedback_cmd` ("serve" or "forget"); returns the exit code."""
    fb = feedback_config(cfg, args)
    if args.feedback_cmd == "serve":
        return serve(fb, args)
    n = forget(fb, args.rater)
    print(
        f"forgot rater {args.rater}: {n} rating(s) deleted from {fb.store_path}; "
        "later ratings from them are refused",
        flush=True,
    )
    return 0


def serve(cfg, args: argparse.Namespace | None = None) -> int:
    """Run the gateway until SIGINT/SIGTERM (or `args.duration_s`); returns an exit code."""
    from .server import FeedbackGateway

    fb = feedback_config(cfg, args)
    gateway = FeedbackGateway(fb)
    stop = threading.Event()
    addresses = gateway.start()
    try:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
        token = "required" if fb.token else "NOT set (open to anyone who can connect)"
        print(
            f"feedback gateway: rating page {addresses['rate_url']}  gRPC {addresses['grpc_target']}"
            f"  store {fb.store_path}  token {token}",
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
    """Delete every rating of `rater` and refuse their later ones; returns how many were deleted."""
    from .store import FeedbackStore

    store = FeedbackStore.from_config(feedback_config(cfg))
    try:
        return store.forget(rater)
    finally:
        store.close()


def add_arguments(sub: argparse._SubParsersAction, parents: tuple = ()) -> None:
    """Add the `serve` and `forget` subcommands to `sub`; `parents` add the config options."""
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--store", help="SQLite store path (feedback.store_path)")
    both = [*parents, store]
    s = sub.add_parser(
        "serve", parents=both, help="run the feedback gateway (gRPC + HTTP + rating page)"
    )
    s.add_argument("--host", help="interface to bind (feedback.host)")
    s.add_argument(
        "--http-port",
        "--port",
        dest="http_port",
        type=int,
        help="HTTP port, 0 = free (feedback.http_port)",
    )
    s.add_argument("--grpc-port", type=int, help="gRPC port, 0 = free (feedback.grpc_port)")
    s.add_argument("--ready-file", help="write the addresses as JSON here once serving")
    s.add_argument("--duration-s", type=float, help="stop after this many seconds")
    f = sub.add_parser(
        "forget", parents=both, help="delete a rater's ratings and keep them out of training"
    )
    f.add_argument("rater", help="the rater's pseudonymous id")
