"""The TrajectorySink protocol: ListSink, the explicit CreditWait result, and how the rollout
worker reads a sink (credits or none, the learner's version) without probing it."""

from __future__ import annotations

import threading
import time

import pytest
from test_trainer import tiny_model  # a tiny causal LM (tests/unit)

from rewardloop.actors.rollout import RolloutWorker
from rewardloop.actors.trajectory_client import TrajectoryClient
from rewardloop.config import load_config
from rewardloop.sink import CreditWait, ListSink, SendResult, TrajectorySink
from rewardloop.trajectory import Trajectory


def traj(tid: str) -> Trajectory:
    return Trajectory(
        id=tid,
        group_id="g",
        prompt_ids=[1],
        completion_ids=[2],
        behavior_logprobs=[-0.5],
        reward=0.0,
        policy_version=0,
    )


def test_list_sink_keeps_batches_and_counts_a_repeated_id_as_duplicate():
    sink = ListSink()
    first = sink.send([traj("a"), traj("b")])
    second = sink.send([traj("b"), traj("c")])
    assert isinstance(first, SendResult) and first.accepted == ["a", "b"]
    assert second.accepted == ["c"] and second.duplicate == ["b"] and second.rejected == []
    assert [t.id for t in sink.sent] == ["a", "b", "b", "c"] and len(sink.batches) == 2
    assert sink.credits is None and sink.learner_version == -1
    assert sink.wait_for_credits(100, 60.0) is CreditWait.GRANTED


def test_credit_wait_is_not_a_bool():
    with pytest.raises(TypeError, match="CreditWait"):
        bool(CreditWait.TIMED_OUT)


@pytest.mark.parametrize(
    "make", [ListSink, lambda: TrajectoryClient("127.0.0.1:1", "w0")], ids=["list", "grpc"]
)
def test_both_sinks_have_the_protocol_members(make):
    members = ("send", "wait_for_credits", "credits", "learner_version", "carried")
    sink = make()  # the client connects on first use, not here
    assert all(hasattr(TrajectorySink, m) and hasattr(sink, m) for m in members)
    assert sink.learner_version == -1
    assert sink.credits is None if isinstance(sink, ListSink) else sink.credits == 0


class ScriptedSink(ListSink):
    """A credit-granting sink whose waits end as scripted (then TIMED_OUT), without blocking."""

    def __init__(self, credits: int, outcomes: list[CreditWait]):
        super().__init__()
        self.credits = credits
        self.outcomes = list(outcomes)
        self.calls: list[tuple[int, float]] = []

    def wait_for_credits(self, n: int, timeout_s: float) -> CreditWait:
        self.calls.append((n, timeout_s))
        return self.outcomes.pop(0) if self.outcomes else CreditWait.TIMED_OUT


def worker(sink, *overrides) -> RolloutWorker:
    cfg = load_config(
        None, ["rollout.group_size=2", "rollout.prompts_per_generation=3", *overrides]
    )
    return RolloutWorker("w0", cfg, tiny_model(), None, None, None, sink)


def test_a_sink_without_credits_is_not_waited_on():
    w = worker(ListSink())
    assert w.wait_for_room(threading.Event(), timeout_s=60) == 3


def test_granted_ends_the_wait_and_credits_size_the_generation():
    sink = ScriptedSink(credits=4, outcomes=[CreditWait.TIMED_OUT, CreditWait.GRANTED])
    assert (
        worker(sink).wait_for_room(threading.Event(), timeout_s=60) == 2
    )  # 4 credits, groups of 2
    assert [n for n, _ in sink.calls] == [2, 2]


def test_an_ended_stream_ends_the_wait_at_once():
    sink = ScriptedSink(credits=0, outcomes=[CreditWait.ENDED])
    t0 = time.monotonic()
    assert worker(sink).wait_for_room(threading.Event(), timeout_s=60) == 1  # send() says why
    assert len(sink.calls) == 1 and time.monotonic() - t0 < 30


def test_timed_out_keeps_waiting_until_the_timeout():
    sink = ScriptedSink(credits=0, outcomes=[])
    t0 = time.monotonic()
    assert worker(sink).wait_for_room(threading.Event(), timeout_s=0.2) == 1
    assert time.monotonic() - t0 >= 0.2 and len(sink.calls) > 1


def test_required_version_follows_the_sinks_learner_version_or_counts():
    known = worker(ListSink(learner_version=5), "learner.max_staleness=1")
    assert known.required_version() == 4
    counting = worker(ListSink(), "learner.max_staleness=1")
    assert counting.required_version() == 0
    counting.generations_on_version = 2  # a version fed max_staleness + 1 generations
    assert counting.required_version() == 1
