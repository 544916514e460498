"""Delayed feedback end to end, on real servers: a feedback gateway on 127.0.0.1:0, simulated
help-desk users rating through its HTTP API after a delay, the human reward source publishing
and polling over gRPC, and a rollout worker that holds its groups until they are rated."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from feedback_testutil import run_bounded

from rewardloop.actors.rollout import RolloutWorker
from rewardloop.config import FeedbackConfig, ModelConfig, RewardConfig, load_config
from rewardloop.feedback.gateway.server import FeedbackGateway
from rewardloop.feedback.sim.helpdesk_users import HelpdeskUser, SimulatedRaters
from rewardloop.feedback.sources.human_source import HumanReward
from rewardloop.scoring import ScoreRequest
from rewardloop.sink import ListSink
from rewardloop.tasks.helpdesk.prompts import prompt_source

TOKEN = "desk-t0ken"
DELAY_S = 0.4  # mean; every rating comes 0.2 .. 0.6 s after its item was published
PROMPT = "Customer: I forgot my password.\nAgent:"
HELPFUL = "Sure, first open the login page, then click forgot password."
GENERIC = "Please contact support for more help."


@pytest.fixture
def gateway(tmp_path):
    gw = FeedbackGateway(
        FeedbackConfig(
            store_path=str(tmp_path / "fb.sqlite3"), http_port=0, grpc_port=0, token=TOKEN
        )
    )
    addresses = gw.start()
    yield gw, addresses
    gw.stop()


def start_raters(addresses, n=2, **kw) -> SimulatedRaters:
    user = HelpdeskUser(helpful_prob=1.0, unhelpful_prob=0.0)  # deterministic verdicts
    return SimulatedRaters.over_http(
        addresses["http_url"],
        TOKEN,
        user=user,
        n_raters=n,
        mean_delay_s=DELAY_S,
        poll_interval_s=0.05,
        **kw,
    ).start()


def human_source(addresses) -> HumanReward:
    cfg = RewardConfig(kind="human", url=addresses["grpc_target"], timeout_s=5.0)
    return HumanReward.from_config(cfg, token=TOKEN)


def poll_all(source: HumanReward, n: int, limit_s: float = 20.0) -> dict:
    got: dict = {}
    deadline = time.monotonic() + limit_s
    while len(got) < n and time.monotonic() < deadline:
        got.update(source.poll(timeout_s=0.5))
    return got


def test_published_answers_are_rated_after_the_delay_and_polled_back(gateway):
    gw, addresses = gateway
    raters = start_raters(addresses)
    source = human_source(addresses)
    try:
        items = [ScoreRequest(f"h{i}", PROMPT, HELPFUL) for i in range(3)]
        items += [ScoreRequest(f"g{i}", PROMPT, GENERIC) for i in range(3)]
        assert source.score(items) == [None] * 6  # delayed: nothing known yet
        got = poll_all(source, 6)
    finally:
        stats = raters.stop()
        source.close()
    assert sorted(got) == sorted(i.id for i in items)
    for item_id, score in got.items():
        assert score.source == "human" and score.rater.startswith("sim-0-")
        assert score.reward == (1.0 if item_id.startswith("h") else 0.0)
        assert score.latency_s >= DELAY_S * 0.5  # rated after its delay, not at once
    assert stats["stored"] == 6 and stats["helpful"] == 3 and stats["errors"] == {}
    assert stats["mean_delay_s"] >= DELAY_S * 0.5
    assert gw.stats()["rated"] == 6


def test_raters_need_the_token(gateway):
    _, addresses = gateway
    raters = SimulatedRaters.over_http(
        addresses["http_url"], "wrong", n_raters=1, mean_delay_s=0.0, poll_interval_s=0.05
    ).start()
    try:
        deadline = time.monotonic() + 10
        while not raters.stats()["errors"] and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stats = raters.stop()
    assert stats["errors"].get("Unauthenticated", 0) >= 1 and stats["stored"] == 0


class _Sink(ListSink):
    """Stands in for the learner's stream: records what the worker sends, and when."""

    def __init__(self):
        super().__init__()
        self.timed: list[tuple[int, list]] = []  # (generations done, batch) per send
        self.worker: RolloutWorker | None = None

    def send(self, trajectories):
        self.timed.append((self.worker.counters["generations"], list(trajectories)))
        return super().send(trajectories)


class _CountingWorker(RolloutWorker):
    """Records the most groups it ever held awaiting rewards."""

    most_pending = 0

    def generate(self, n_groups=None):
        out = super().generate(n_groups)
        self.most_pending = max(self.most_pending, len(self.pending))
        return out


@pytest.fixture(scope="module")
def policy(model_cache):
    """The cached news-feed model: any causal LM will do, the users judge whatever it writes."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rewardloop.tasks.newsfeed.build import cache_path

    torch.set_num_threads(1)
    path = cache_path(ModelConfig(cache_dir=model_cache))
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    return model, AutoTokenizer.from_pretrained(path, local_files_only=True)


def make_worker(policy, addresses, overrides, weights=None) -> tuple[_CountingWorker, _Sink]:
    cfg = load_config(
        None,
        [
            "task=helpdesk",
            "reward.kind=human",
            f"reward.url={addresses['grpc_target']}",
            f"feedback.token={TOKEN}",
            "rollout.group_size=2",
            "rollout.prompts_per_generation=1",
            "rollout.max_new_tokens=6",
            *overrides,
        ],
    )
    sink = _Sink()
    model, tokenizer = policy
    worker = _CountingWorker(
        "w0",
        cfg,
        model,
        tokenizer,
        prompt_source(),
        human_source(addresses),
        sink,
        weights=weights,
        seed=1,
    )
    sink.worker = worker
    return worker, sink


def test_worker_holds_groups_until_rated_and_bounds_what_is_pending(gateway, policy):
    _, addresses = gateway
    raters = start_raters(addresses)
    worker, sink = make_worker(policy, addresses, ["rollout.max_pending_groups=2"])
    try:
        counters = run_bounded(lambda: worker.run(threading.Event(), max_generations=5), 30)
        deadline = time.monotonic() + 15
        while worker.pending and time.monotonic() < deadline:  # the last groups' ratings
            worker.flush()
            time.sleep(0.05)
    finally:
        raters.stop()
        worker.reward.close()
    assert worker.most_pending <= 2  # never more than max_pending_groups awaiting ratings
    assert counters["generations"] == 5 and not worker.pending
    sent = [t for _, batch in sink.timed for t in batch]
    assert len(sent) == 10 and len({t.group_id for t in sent}) == 5
    for t in sent:  # every trajectory carries its rating
        assert t.feedback_source == "human" and t.rater.startswith("sim-")
        assert t.reward in (0.0, 1.0) and t.feedback_latency_s >= DELAY_S * 0.5


def test_worker_keeps_delivering_ratings_while_it_waits_for_new_weights(gateway, policy):
    """Strictly on-policy and no new version yet: the worker must still hand in the rated
    group of its first generation (the learner needs it to make that new version)."""
    _, addresses = gateway
    raters = start_raters(addresses)
    worker, sink = make_worker(
        policy,
        addresses,
        ["learner.max_staleness=0", "rollout.rpc_timeout_s=5"],
        weights=lambda have: None,
    )
    try:
        run_bounded(lambda: worker.run(threading.Event(), max_generations=2), 30)
    finally:
        raters.stop()
        worker.reward.close()
    assert sink.timed, "nothing was sent"
    generations_at_first_send, first = sink.timed[0]
    assert generations_at_first_send == 1 and len(first) == 2


def test_autostart_starts_gateway_and_raters_for_a_run(ray_local, tmp_path):
    """cluster.feedback_side: the gateway as a Ray actor, reward.url filled in, raters rating."""
    from rewardloop.cluster.feedback_side import start_feedback

    cfg = load_config(
        None,
        [
            "task=helpdesk",
            "reward.kind=human",
            "feedback.autostart=true",
            f"out={tmp_path}",
            "feedback.store_path=fb.sqlite3",
            "feedback.http_port=0",
            "feedback.grpc_port=0",
            f"feedback.token={TOKEN}",
            "feedback.simulated_raters=2",
            f"feedback.rating_delay_s={DELAY_S}",
        ],
    )
    side = start_feedback(cfg)
    try:
        assert side.cfg.reward.url == side.addresses["grpc_target"]
        assert side.cfg.feedback.store_path == str(tmp_path / "fb.sqlite3")
        source = HumanReward.from_config(side.cfg.reward, token=TOKEN)
        items = [ScoreRequest(f"a{i}", PROMPT, HELPFUL) for i in range(4)]
        source.score(items)
        got = poll_all(source, 4)
        source.close()
    finally:
        stats = side.stop()
    assert len(got) == 4 and all(s.source == "human" for s in got.values())
    assert stats["gateway"]["rated"] == 4 and stats["raters"]["stored"] == 4
    assert stats["mean_delay_s"] >= DELAY_S * 0.5 and stats["ratings_per_s"] > 0
    assert (tmp_path / "fb.sqlite3").exists()
