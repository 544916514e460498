"""How many ratings per second the gateway sustains over HTTP, durable before each ack.

    python -m rewardloop.feedback.sim.loadtest --ratings 2000 --threads 4

Starts a gateway on 127.0.0.1:0 with a fresh store in a temporary directory, publishes the
items, then submits one rating per item from a few threads (persistent HTTP/1.1 connections)
and prints a JSON line. Client and server share this machine's cores, so the figure is a floor.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import threading
import time
from urllib.parse import urlsplit

from rewardloop.config import FeedbackConfig
from rewardloop.feedback.gateway.client import connect
from rewardloop.feedback.gateway.server import FeedbackGateway
from rewardloop.scoring import ScoreRequest


def _submit_range(url: str, token: str, ids: list[str], errors: list[str]) -> None:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    try:
        for i in ids:
            body = json.dumps({"item_id": i, "value": 1.0, "rater": "r-load"})
            conn.request("POST", "/v1/ratings", body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 200 or not json.loads(data)["stored"]:
                errors.append(f"{i}: HTTP {resp.status} {data[:100]!r}")
    finally:
        conn.close()


def run(ratings: int = 2000, threads: int = 4, store_dir: str | None = None) -> dict:
    with tempfile.TemporaryDirectory(dir=store_dir) as tmp:
        token = "load-test"
        cfg = FeedbackConfig(
            store_path=os.path.join(tmp, "load.sqlite3"), http_port=0, grpc_port=0, token=token
        )
        gateway = FeedbackGateway(cfg)
        url = gateway.start()["http_url"]
        try:
            ids = [f"item-{i}" for i in range(ratings)]
            client = connect(url, headers={"Authorization": f"Bearer {token}"}, timeout_s=30)
            for k in range(0, ratings, 1000):
                client.publish(
                    [ScoreRequest(id=i, prompt="p", completion="c") for i in ids[k : k + 1000]],
                    "load",
                )
            client.close()
            errors: list[str] = []
            workers = [
                threading.Thread(target=_submit_range, args=(url, token, ids[t::threads], errors))
                for t in range(threads)
            ]
            t0 = time.perf_counter()
            for w in workers:
                w.start()
            for w in workers:
                w.join(600)
            seconds = time.perf_counter() - t0
            stored = gateway.stats()["rated"]
        finally:
            gateway.stop()
    return {
        "ratings": ratings,
        "threads": threads,
        "stored": stored,
        "errors": len(errors),
        "seconds": round(seconds, 3),
        "ratings_per_s": round(ratings / seconds, 1),
        "durability": "sqlite WAL, synchronous=FULL, one commit per rating",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratings", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument(
        "--store-dir", help="where the temporary store lives (default: the system temp dir)"
    )
    args = parser.parse_args(argv)
    result = run(args.ratings, args.threads, args.store_dir)
    print(json.dumps(result))
    return 0 if result["errors"] == 0 and result["stored"] == result["ratings"] else 1


if __name__ == "__main__":
    sys.exit(main())
