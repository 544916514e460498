"""The feedback gateway over real gRPC and HTTP on 127.0.0.1:0, with the human reward source."""

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import time

import aiohttp
import grpc
import pytest
from feedback_testutil import self_signed_cert
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rewardloop.config import FeedbackConfig, RewardConfig
from rewardloop.errors import InvalidInput, NotFound, PayloadTooLarge, Unauthenticated
from rewardloop.feedback.gateway.client import connect
from rewardloop.feedback.gateway.main import forget
from rewardloop.feedback.gateway.server import FeedbackGateway
from rewardloop.feedback.sources.human_source import HumanReward
from rewardloop.scoring import EXPIRED, ScoreRequest

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def reqs(*ids, completion="Local team wins the cup"):
    return [ScoreRequest(id=i, prompt="A headline for ana:", completion=completion) for i in ids]


@pytest.fixture
def make_gateway(tmp_path):
    started = []

    def make(**kw):
        cfg = FeedbackConfig(
            store_path=str(tmp_path / f"fb{len(started)}.sqlite3"),
            http_port=0,
            grpc_port=0,
            token=TOKEN,
            **kw,
        )
        gw = FeedbackGateway(cfg)
        gw.start()
        started.append(gw)
        return gw

    yield make
    for gw in started:
        gw.stop()


def urls(gw):
    a = gw.addresses()
    return {"http": a["http_url"], "grpc": a["grpc_target"]}


def human(url, **kw):
    return HumanReward.from_config(
        RewardConfig(kind="human", url=url, timeout_s=5, retries=1, **kw), token=TOKEN
    )


def poll_until(src, n, limit_s=10.0):
    """Poll until n outcomes arrived (bounded)."""
    got, deadline = {}, time.monotonic() + limit_s
    while len(got) < n and time.monotonic() < deadline:
        got.update(src.poll(0.5))
    return got


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_calls_auth_idempotency_and_unknown_items(make_gateway, transport):
    gw = make_gateway()
    url = urls(gw)[transport]
    client = connect(url, headers=AUTH, timeout_s=5)
    try:
        assert client.publish(reqs("a", "b"), "pub-1") == []
        assert [it.id for it in client.pending()] == ["a", "b"]
        first = client.submit("a", 1.0, rater="r-1", key="k-1")
        again = client.submit("a", 1.0, rater="r-1", key="k-1")
        assert (first.stored, first.duplicate) == (True, False)
        assert (again.stored, again.duplicate) == (True, True)
        assert gw.core.store.rating("a")["value"] == 1.0
        assert client.submit("b", stars=2, rater="r-2").stored
        assert gw.core.store.rating("b")["value"] == 0.25
        with pytest.raises(NotFound, match="unknown item"):
            client.submit("nope", 1.0, rater="r-1")
        with pytest.raises(InvalidInput, match="rater"):
            client.submit("b", 1.0, rater="someone@example.com")
    finally:
        client.close()
    anonymous = connect(url, timeout_s=5, retries=0)
    try:
        for call in (
            lambda: anonymous.publish(reqs("c"), "pub"),
            lambda: anonymous.submit("b", 1.0, rater="r-3"),
        ):
            with pytest.raises(Unauthenticated):
                call()
    finally:
        anonymous.close()
    stats = gw.stats()
    assert stats["rated"] == 2 and stats["duplicates"] == 1
    assert (
        stats["request_errors"]["unauthenticated"] == 2
        and stats["request_errors"]["not_found"] == 1
    )


def test_health_needs_no_token(make_gateway):
    gw = make_gateway()
    target = gw.addresses()["grpc_target"].removeprefix("grpc://")
    with grpc.insecure_channel(target) as ch:
        res = health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5
        )
    assert res.status == health_pb2.HealthCheckResponse.SERVING

    async def get():
        async with (
            aiohttp.ClientSession() as s,
            s.get(gw.addresses()["http_url"] + "/healthz") as r,
        ):
            return r.status, await r.json()

    assert asyncio.run(get()) == (200, {"status": "SERVING"})


def test_request_size_limit(make_gateway):
    gw = make_gateway(max_request_bytes=4096)
    big = {"publisher": "p", "items": [{"id": "x", "prompt": "p", "completion": "z" * 10_000}]}

    async def post():
        async with aiohttp.ClientSession(headers=AUTH) as s:
            async with s.post(gw.addresses()["http_url"] + "/v1/publish", json=big) as r:
                return r.status, await r.json()

    status, body = asyncio.run(post())
    assert status == 413 and "max_request_bytes=4096" in body["error"]
    client = connect(gw.addresses()["grpc_target"], headers=AUTH, timeout_s=5, retries=0)
    with pytest.raises(PayloadTooLarge):
        client.publish(reqs("x", completion="z" * 10_000), "p")
    client.close()
    assert gw.core.store.counters()["pending"] == 0


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_rating_completes_the_item_and_forget_keeps_it_out(make_gateway, transport):
    gw = make_gateway()
    src = human(urls(gw)[transport])
    rater = connect(urls(gw)["http"], headers=AUTH, timeout_s=5)
    try:
        assert src.score(reqs("t1", "t2")) == [None, None]
        rater.submit("t1", 1.0, rater="r-ana")
        got = poll_until(src, 1)
        assert set(got) == {"t1"}
        assert (got["t1"].reward, got["t1"].source, got["t1"].rater) == (1.0, "human", "r-ana")
        assert got["t1"].latency_s >= 0

        rater.submit("t2", 0.0, rater="r-gone")
        assert forget(gw.cfg, "r-gone") == 1  # as `rewardloop feedback forget r-gone` does
        assert src.poll(0.5) == []  # the forgotten rating never comes back
        with pytest.raises(InvalidInput, match="forgotten"):
            rater.submit("t2", 1.0, rater="r-gone")
        rater.submit("t2", 1.0, rater="r-bo")  # the item went back to pending
        got = poll_until(src, 1)
        assert got["t2"].rater == "r-bo" and got["t2"].reward == 1.0
        assert src.waiting == set()
    finally:
        src.close()
        rater.close()


async def _post(url, body):
    async with aiohttp.ClientSession(headers=AUTH) as s, s.post(url, json=body) as r:
        return await r.text()


def _reject(constant):
    raise ValueError(f"not JSON: {constant}")


@pytest.mark.parametrize("transport", ["http", "grpc"])
@pytest.mark.parametrize("outcome", ["drop", "neutral"])
def test_expiry_reaches_the_worker(make_gateway, outcome, transport):
    gw = make_gateway(expiry_s=0.3, expiry_outcome=outcome, neutral_reward=0.4)
    src = human(urls(gw)[transport])
    try:
        src.score(reqs("late"))
        if transport == "http":  # the raw answer is strict JSON (no NaN), ready for any client
            time.sleep(0.4)
            raw = asyncio.run(_post(urls(gw)["http"] + "/v1/collect", {"publisher": src.publisher}))
            (outcome_json,) = json.loads(raw, parse_constant=_reject)["outcomes"]
            assert outcome_json["reward"] == (None if outcome == "drop" else 0.4)
        (score,) = poll_until(src, 1).values()
        if outcome == "drop":
            assert score.source == EXPIRED and math.isnan(score.reward)
        else:
            assert score.source == "neutral" and score.reward == 0.4
        assert gw.stats()[f"expired_{outcome}"] == 1
    finally:
        src.close()


def test_content_check_blocks_before_anyone_sees_it(make_gateway):
    gw = make_gateway(
        content_check="rewardloop.feedback.sources.content_check:block_contact_details",
        blocked_reward=-1.5,
    )
    src = human(urls(gw)["http"])
    try:
        src.score(reqs("ok") + reqs("bad", completion="call 555-123-4567 for a prize"))
        assert src.blocked_on_publish == 1
        client = connect(urls(gw)["http"], headers=AUTH, timeout_s=5)
        assert [it.id for it in client.pending()] == ["ok"]
        client.close()
        got = poll_until(src, 1)
        assert got["bad"].source == "blocked" and got["bad"].reward == -1.5
        assert gw.stats()["blocked"] == 1
    finally:
        src.close()


def test_tls_for_grpc_and_https(make_gateway, tmp_path):
    cert, key = self_signed_cert(tmp_path)
    gw = make_gateway(tls_cert=cert, tls_key=key)
    a = gw.addresses()
    assert a["http_url"].startswith("https://") and a["grpc_target"].startswith("grpcs://")
    for url in (a["http_url"], a["grpc_target"]):
        client = connect(url, headers=AUTH, timeout_s=5, ca_cert=cert)
        client.publish(reqs(f"id-{url[:5]}"), "pub")
        assert f"id-{url[:5]}" in [it.id for it in client.pending()]
        client.close()
    plain = connect(
        a["http_url"].replace("https://", "http://"), headers=AUTH, timeout_s=2, retries=0
    )
    with pytest.raises(Exception, match="feedback gateway"):
        plain.pending()
    plain.close()


def test_rating_page_works_with_plain_forms(make_gateway):
    gw = make_gateway()
    client = connect(urls(gw)["http"], headers=AUTH, timeout_s=5)
    client.publish(reqs("t9", completion="<script>alert(1)</script> Local hero"), "pub")
    client.close()
    base = urls(gw)["http"]

    async def visit():
        jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1
        async with aiohttp.ClientSession(cookie_jar=jar) as s:
            async with s.get(f"{base}/rate") as r:
                assert r.status == 401
            async with s.get(f"{base}/rate?token=wrong") as r:
                assert r.status == 401
            async with s.get(f"{base}/rate?token={TOKEN}") as r:  # follows the 303 with the cookie
                page = await r.text()
                assert r.status == 200 and "script-src" not in r.headers["Content-Security-Policy"]
                assert (
                    "&lt;script&gt;alert(1)&lt;/script&gt; Local hero" in page
                    and "<script>" not in page
                )
            form = {"item_id": "t9", "scale": "like", "value": "1"}
            async with s.post(f"{base}/rate", data=form) as r:
                assert r.status == 200 and "your rating is saved" in await r.text()
            async with s.post(f"{base}/rate", data={"item_id": "gone", "value": "1"}) as r:
                assert "does not exist" in await r.text()

    asyncio.run(visit())
    rating = gw.core.store.rating("t9")
    assert rating["value"] == 1.0 and rating["rater"].startswith("r-")


def test_serve_and_forget_commands(tmp_path):
    store, ready = tmp_path / "cli.sqlite3", tmp_path / "ready.json"
    env = {**os.environ, "RL_FB_TOKEN": TOKEN}
    cmd = [
        sys.executable,
        "-m",
        "rewardloop.cli",
        "feedback",
        "serve",
        "--http-port",
        "0",
        "--grpc-port",
        "0",
        "--store",
        str(store),
        "--ready-file",
        str(ready),
        "--set",
        "feedback.token=env:RL_FB_TOKEN",
    ]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ready.exists(), (
            proc.stdout.read() if proc.poll() is not None else "gateway did not start"
        )
        addresses = json.loads(ready.read_text())
        client = connect(addresses["grpc_target"], headers=AUTH, timeout_s=5)
        client.publish(reqs("c1"), "pub")
        client.submit("c1", 1.0, rater="r-cli")
        client.close()
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "rewardloop.cli",
                "feedback",
                "forget",
                "r-cli",
                "--store",
                str(store),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0 and "1 rating(s) deleted" in out.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "feedback gateway: stopped" in output
