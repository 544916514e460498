"""The feedback gateway killed with SIGKILL mid-load loses no acked rating (issue 12).

`rewardloop feedback serve` runs as a real process; four raters post ratings over HTTP, each
recorded only once the gateway acked it (stored). Mid-load the process is SIGKILLed -- no
signal handler, no graceful stop, no checkpoint -- and restarted on the same SQLite file.
Every acked rating is there with its value, its item is rated, and the restarted gateway
answers a re-send of the same idempotency key as a duplicate. What makes it true: the store
commits (WAL, `synchronous=FULL`) before the answer goes out; the test checks those settings.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

from fuzz_testutil import wait_for

from rewardloop.feedback.gateway.client import connect
from rewardloop.feedback.gateway.store import FeedbackStore
from rewardloop.scoring import ScoreRequest

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "kill-t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ITEMS, RATERS = 400, 4


def start_gateway(store: Path, ready: Path, log: Path) -> subprocess.Popen:
    ready.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "rewardloop.cli", "feedback", "serve", "--store", str(store)]
    cmd += ["--http-port", "0", "--grpc-port", "0", "--ready-file", str(ready)]
    cmd += ["--set", "feedback.token=env:RL_KILL_TOKEN", "--set", "feedback.expiry_s=3600"]
    env = {**os.environ, "RL_KILL_TOKEN": TOKEN}
    with log.open("a") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    if not wait_for(lambda: ready.exists() or proc.poll() is not None, limit_s=60):
        proc.kill()
    assert ready.exists(), log.read_text()[-3000:]
    return proc


def rate(url: str, items: list[str], rater: str, acked: list, stop: threading.Event) -> None:
    """Post one rating per item; keep (key, item, value) of each the gateway acked as stored."""
    client = connect(url, headers=AUTH, timeout_s=5.0, retries=0)
    try:
        for i, item in enumerate(items):
            if stop.is_set():
                return
            key, value = f"{rater}-{item}", float(i % 2)
            try:
                result = client.submit(item, value, rater=rater, key=key)
            except Exception:  # noqa: BLE001 - the gateway is gone: this rater stops
                return
            assert result.stored and not result.duplicate, result
            acked.append((key, item, value))
    finally:
        client.close()


def test_sigkill_mid_load_loses_no_acked_rating(tmp_path):
    store, ready, log = tmp_path / "fb.sqlite3", tmp_path / "ready.json", tmp_path / "gw.log"
    proc = start_gateway(store, ready, log)
    acked: list[tuple[str, str, float]] = []
    stop = threading.Event()
    try:
        url = json.loads(ready.read_text())["http_url"]
        publisher = connect(url, headers=AUTH, timeout_s=10.0)
        ids = [f"item-{i}" for i in range(ITEMS)]
        publisher.publish(
            [ScoreRequest(id=i, prompt="A headline:", completion=i) for i in ids], "p"
        )
        publisher.close()
        raters = [
            threading.Thread(target=rate, args=(url, ids[k::RATERS], f"r-{k}", acked, stop))
            for k in range(RATERS)
        ]
        for t in raters:
            t.start()
        # mid-load: some ratings acked, most still to come
        assert wait_for(lambda: len(acked) >= 40 or proc.poll() is not None, limit_s=120)
        assert proc.poll() is None, log.read_text()[-3000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        for t in raters:
            t.join(30)
        assert not any(t.is_alive() for t in raters)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    n_acked = len(acked)
    assert 40 <= n_acked < ITEMS, n_acked  # the kill landed mid-load

    proc = start_gateway(store, ready, log)  # the same store file
    try:
        url = json.loads(ready.read_text())["http_url"]
        db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
        try:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            rows = dict(
                (
                    (key, (item, value))
                    for key, item, value in db.execute("SELECT key, item_id, value FROM ratings")
                )
            )
            states = dict(db.execute("SELECT id, state FROM items"))
        finally:
            db.close()
        missing = [key for key, item, value in acked if rows.get(key) != (item, value)]
        assert not missing, f"{len(missing)} of {n_acked} acked ratings lost: {missing[:5]}"
        assert all(states[item] == "rated" for _, item, _ in acked)
        client = connect(url, headers=AUTH, timeout_s=10.0)
        try:  # the restarted gateway knows them: a re-send is a duplicate, not a second rating
            for key, item, value in acked[:: max(1, n_acked // 10)]:
                again = client.submit(item, value, rater=key.rsplit("-item-", 1)[0], key=key)
                assert again.duplicate, (key, again)  # (stored: it is, from before)
        finally:
            client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    print(
        f"\n[sigkill] acked before the kill: {n_acked}, found after restart: {n_acked - len(missing)}"
    )


def test_the_store_commits_with_wal_and_synchronous_full(tmp_path):
    """The settings the test above relies on, read back from a store's own connection."""
    store = FeedbackStore(tmp_path / "s.sqlite3")
    assert store.journal_mode == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
