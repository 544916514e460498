"""The HTTP reward contract against a real aiohttp service on 127.0.0.1:0."""

import asyncio
import json
import socket

import pytest
from aiohttp import web
from feedback_testutil import AioServer, run_bounded

from rewardloop.errors import RewardServiceError
from rewardloop.feedback.sources.http_source import HttpReward
from rewardloop.scoring import ScoreRequest


def reqs(n):
    return [
        ScoreRequest(id=f"t{i}", prompt=f"p{i}", completion="x" * i, metadata={"i": str(i)})
        for i in range(n)
    ]


def source(url, **kw):
    kw = {"timeout_s": 2.0, "retries": 0, **kw}
    return HttpReward(url, **kw)


def test_contract_batches_order_and_headers():
    seen = []

    async def handler(request):
        seen.append((request.headers.get("Authorization"), await request.json()))
        items = seen[-1][1]["items"]
        return web.json_response(
            {"rewards": [len(it["completion"]) + int(it["metadata"]["i"]) for it in items]}
        )

    with AioServer(handler) as server:
        src = source(server.url, max_batch=2, headers={"Authorization": "Bearer tok"})
        scores = src.score(reqs(5))
        src.close()
    assert [s.reward for s in scores] == [0, 2, 4, 6, 8]  # order kept across batches
    assert sorted(len(body["items"]) for _, body in seen) == [1, 2, 2]
    assert {auth for auth, _ in seen} == {"Bearer tok"}
    assert set(seen[0][1]["items"][0]) == {"id", "prompt", "completion", "metadata"}
    assert scores[0].parts[0].name == "http" and scores[0].source == "http"


def test_wrong_token_is_a_clear_error_without_retries():
    async def handler(request):
        if request.headers.get("Authorization") != "Bearer right":
            return web.json_response({"error": "bad token"}, status=401)
        return web.json_response({"rewards": [1.0]})

    with AioServer(handler) as server:
        src = source(server.url, retries=3, headers={"Authorization": "Bearer wrong"})
        with pytest.raises(RewardServiceError, match="HTTP 401: bad token"):
            src.score(reqs(1))
        assert src.client.attempts == 1
        src.close()


def test_timeout_is_an_error_and_never_hangs():
    async def handler(request):
        await asyncio.sleep(5)
        return web.json_response({"rewards": [1.0]})

    with AioServer(handler) as server:
        src = source(server.url, timeout_s=0.3, retries=1)
        with pytest.raises(
            RewardServiceError,
            match=r"no answer within timeout_s=0.3 s \(gave up after 2 attempts\)",
        ):
            run_bounded(lambda: src.score(reqs(2)), limit_s=10)
        src.close()


def test_retries_with_backoff_then_success():
    calls = []

    async def handler(request):
        calls.append(1)
        if len(calls) <= 2:
            return web.Response(status=503, text="warming up")
        return web.json_response({"rewards": [0.25]})

    with AioServer(handler) as server:
        src = source(server.url, retries=3)
        (s,) = src.score(reqs(1))
        src.close()
    assert s.reward == 0.25 and len(calls) == 3


@pytest.mark.parametrize(
    "body, problem",
    [
        ({"rewards": [1.0]}, "answer has 1 rewards for 2 items"),
        ({"rewards": [1.0, "high"]}, r"rewards\[1\] is 'high', not a number"),
        ({"rewards": [1.0, True]}, r"rewards\[1\] is True, not a number"),
        ({"rewards": [1.0, float("nan")]}, r"rewards\[1\] is nan, not a finite number"),
        ({"scores": [1.0, 2.0]}, "must be a JSON object with a 'rewards' list"),
        ({"rewards": "1,2"}, "'rewards' must be a list"),
        ("<html>oops</html>", "answered invalid JSON"),
    ],
)
def test_garbage_answers_name_the_problem(body, problem):
    async def handler(request):
        text = body if isinstance(body, str) else json.dumps(body)
        return web.Response(text=text, content_type="application/json")

    with AioServer(handler) as server:
        src = source(server.url, retries=2)
        with pytest.raises(RewardServiceError, match=problem):
            src.score(reqs(2))
        assert src.client.attempts == 1  # garbage is not retried
        src.close()


def test_dead_service_fails_fast():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = source(f"http://127.0.0.1:{port}/score", retries=1)
    with pytest.raises(RewardServiceError, match="connection failed"):
        run_bounded(lambda: src.score(reqs(1)), limit_s=10)
    src.close()


def test_concurrency_limit():
    state = {"now": 0, "max": 0, "calls": 0}

    async def handler(request):
        state["now"] += 1
        state["calls"] += 1
        state["max"] = max(state["max"], state["now"])
        await asyncio.sleep(0.15)
        state["now"] -= 1
        n = len((await request.json())["items"])
        return web.json_response({"rewards": [0.0] * n})

    with AioServer(handler) as server:
        src = source(server.url, max_batch=1, max_concurrency=2)
        assert len(src.score(reqs(6))) == 6
        src.close()
    assert state["calls"] == 6
    assert state["max"] == 2  # parallel, but never more than the limit
