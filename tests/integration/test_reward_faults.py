"""A reward service that hangs or errors never hangs a worker (issue 12, feedback faults).

A real RolloutWorker (the default model, a ListSink) scores through the source its config
builds (`reward.kind: http | grpc`, `reward.timeout_s`, `reward.retries`) against a real
service that misbehaves: an aiohttp app that hangs (blocks on an event released at teardown)
or answers 500, a gRPC Score server whose reward function hangs, and a gRPC service that is
gone (UNAVAILABLE). Each call is cut off at its deadline and retried with backoff, a bounded
number of times; then the generation's trajectories are failed: counted in `reward_failed`,
reported to the worker's `on_dropped` hook with a reason naming the reward, never sent -- and
the worker finishes its generations. Once the service answers again, the next generation is
scored and sent.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from aiohttp import web
from feedback_testutil import AioServer, run_bounded

from rewardloop.actors.rollout import RolloutWorker
from rewardloop.config import load_config
from rewardloop.feedback.gateway.score_server import ScoreServer
from rewardloop.feedback.sources.factory import make_reward_source
from rewardloop.feedback.sources.transport import call_budget_s
from rewardloop.sink import ListSink
from rewardloop.tasks import get_task

TIMEOUT_S, RETRIES, GENERATIONS = 0.3, 2, 2


class Service:
    """A misbehaving reward service; `healthy` turns it into a good one; `attempts` counted."""

    def __init__(self):
        self.attempts = 0
        self.healthy = False
        self.release = threading.Event()  # set at teardown: hung calls return

    def rewards(self, n: int) -> list[float]:
        return [0.5] * n


def http_server(service: Service, mode: str) -> AioServer:
    async def handler(request: web.Request) -> web.Response:
        service.attempts += 1
        body = await request.json()
        if not service.healthy:
            if mode == "hang":
                while not service.release.is_set():  # an event set from another thread
                    await asyncio.sleep(0.05)
            return web.json_response({"error": "reward model crashed"}, status=500)
        return web.json_response({"rewards": service.rewards(len(body["items"]))})

    return AioServer(handler)


def score_fn(service: Service):
    def fn(prompts, completions, metadata):
        service.attempts += 1
        if not service.healthy:
            service.release.wait(60)  # hangs until teardown (bounded, so the test cannot)
        return service.rewards(len(prompts))

    return fn


def grpc_server(service: Service, port: int = 0) -> ScoreServer:
    return ScoreServer(score_fn(service), port=port, max_workers=16)


def worker_for(cfg, policy) -> tuple[RolloutWorker, ListSink, list]:
    model, tokenizer = policy
    sink, dropped = ListSink(), []
    reward = make_reward_source(cfg, seed=1)
    worker = RolloutWorker(
        "w0", cfg, model, tokenizer, get_task(cfg.task).prompts(cfg), reward, sink, seed=1
    )
    worker.on_dropped = dropped.extend
    return worker, sink, dropped


def config(model_cache, kind: str, url: str):
    return load_config(
        None,
        [
            f"model.cache_dir={model_cache}",
            "rollout.group_size=2",
            "rollout.prompts_per_generation=2",
            "rollout.max_new_tokens=4",
            f"reward.kind={kind}",
            f"reward.url={url}",
            f"reward.timeout_s={TIMEOUT_S}",
            f"reward.retries={RETRIES}",
        ],
    )


def check_failed_then_recovered(cfg, policy, service: Service, counts_attempts: bool) -> None:
    worker, sink, dropped = worker_for(cfg, policy)
    # What one generation may take: its one reward call's whole retry budget, plus generating.
    limit_s = GENERATIONS * (call_budget_s(TIMEOUT_S, RETRIES) + 30)
    try:
        counters = run_bounded(lambda: worker.run(threading.Event(), GENERATIONS), limit_s)
        assert counters["generations"] == GENERATIONS and not worker.pending
        assert counters["reward_failed"] == counters["trajectories"] == GENERATIONS * 4
        assert sink.sent == [] and counters["sent"] == 0
        assert len(dropped) == counters["reward_failed"]
        assert {outcome for _, outcome, _ in dropped} == {"rejected"}
        assert all(reason.startswith("reward: the reward source failed") for *_, reason in dropped)
        if counts_attempts:  # each call: its first try and RETRIES more, then given up
            assert service.attempts == GENERATIONS * (RETRIES + 1)
        service.healthy = True
        counters = run_bounded(lambda: worker.run(threading.Event(), GENERATIONS + 1), limit_s)
        assert counters["reward_failed"] == GENERATIONS * 4  # no more failures
        assert len(sink.sent) == 4 and {t.reward for t in sink.sent} == {0.5}
    finally:
        worker.reward.close()


@pytest.mark.parametrize("mode", ["hang", "error-500"])
def test_http_reward_service_that_hangs_or_errors(model_cache, policy, mode):
    service = Service()
    server = http_server(service, "hang" if mode == "hang" else "500")
    with server:
        try:
            cfg = config(model_cache, "http", server.url)
            check_failed_then_recovered(cfg, policy, service, counts_attempts=True)
        finally:
            service.release.set()


def test_grpc_reward_service_that_hangs(model_cache, policy):
    service = Service()
    server = grpc_server(service).start()
    try:
        cfg = config(model_cache, "grpc", server.target)
        check_failed_then_recovered(cfg, policy, service, counts_attempts=True)
    finally:
        service.release.set()
        server.stop()


def test_grpc_reward_service_that_is_gone(model_cache, policy):
    """UNAVAILABLE (nothing listens any more): retried with backoff, then failed; once the
    service is back on the same port, the worker scores again."""
    service = Service()
    server = grpc_server(service).start()
    port = server.port
    server.stop()
    cfg = config(model_cache, "grpc", f"127.0.0.1:{port}")
    worker, sink, dropped = worker_for(cfg, policy)
    limit_s = GENERATIONS * (call_budget_s(TIMEOUT_S, RETRIES) + 30)
    try:
        counters = run_bounded(lambda: worker.run(threading.Event(), GENERATIONS), limit_s)
        assert counters["reward_failed"] == counters["trajectories"] == GENERATIONS * 4
        assert sink.sent == [] and len(dropped) == GENERATIONS * 4
        assert service.attempts == 0
        service.healthy = True
        back = grpc_server(service, port=port).start()
        try:  # the channel reconnects within its capped backoff: a few generations at most
            for extra in range(1, 11):
                counters = run_bounded(
                    lambda n=GENERATIONS + extra: worker.run(threading.Event(), n), limit_s
                )
                if sink.sent:
                    break
        finally:
            back.stop()
        assert len(sink.sent) == 4 and counters["reward_failed"] == (GENERATIONS + extra - 1) * 4
        assert extra <= 3, f"{extra - 1} more generations failed after the service came back"
    finally:
        worker.reward.close()
