"""The durable response log: feedback idempotent by key, the join (earliest / latest / mean,
default or drop after the wait), unknown ids counted, forget, and a reopen keeps everything."""

from __future__ import annotations

import numpy as np
import pytest

from rewardloop.errors import InvalidInput, NotFound
from rewardloop.serving.response_log import Logged, ResponseLog


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _row(rid: str, user_key: str, version: int = 0) -> Logged:
    return Logged(rid, user_key, "ctx", np.array([1, 2, 3]), np.array([4, 5]),
                  np.array([-0.5, -1.5]), version)  # fmt: skip


def _open(path, clock, **kw) -> ResponseLog:
    return ResponseLog(path, clock=clock, secret="s", **kw)


def test_log_roundtrip_and_idempotent_feedback(tmp_path):
    clock = Clock()
    log = _open(tmp_path / "r.db", clock)
    assert log.journal_mode == "wal"
    u = log.user_key("alice")
    assert u == log.user_key("alice") != log.user_key("bob") and "alice" not in u
    log.log([_row("a", u, version=3)])
    got = log.response("a")
    assert got["completion_ids"] == [4, 5] and got["logprobs"] == [-0.5, -1.5]
    assert got["version"] == 3 and got["state"] == "waiting"
    clock.now += 2.5
    first = log.add_feedback("a", 1.0, u, key="k1")
    assert first == {"stored": True, "duplicate": False, "joined_after_s": 2.5}
    assert log.add_feedback("a", 0.0, u, key="k1")["duplicate"] is True
    (ready,) = log.take_ready()
    assert (ready.id, ready.reward, ready.outcome) == ("a", 1.0, "rated")  # earliest: at once
    assert log.take_ready() == []  # queued: never handed out twice
    assert log.counters()["feedback_duplicate"] == 1


def test_unknown_id_404_counted_and_wrong_user_refused(tmp_path):
    log = _open(tmp_path / "r.db", Clock())
    log.log([_row("a", log.user_key("alice"))])
    with pytest.raises(NotFound):
        log.add_feedback("nope", 1.0, "")
    with pytest.raises(InvalidInput, match="user"):
        log.add_feedback("a", 1.0, log.user_key("mallory"))
    assert log.counters()["feedback_unknown_response"] == 1


def test_unrated_default_after_wait_or_dropped(tmp_path):
    clock = Clock()
    log = _open(tmp_path / "d.db", clock, wait_s=60, unrated="default", default_reward=-0.25)
    log.log([_row("a", "u")])
    clock.now += 59
    assert log.take_ready() == []
    clock.now += 2
    (r,) = log.take_ready()
    assert (r.reward, r.outcome) == (-0.25, "default")
    drop = _open(tmp_path / "x.db", clock, wait_s=60, unrated="drop")
    drop.log([_row("b", "u")])
    clock.now += 61
    assert drop.take_ready() == []
    assert drop.response("b")["state"] == "dropped"
    assert drop.counters()["unrated_dropped"] == 1


@pytest.mark.parametrize("aggregation, expected", [("latest", 0.0), ("mean", 0.5)])
def test_aggregation_waits_for_the_window(tmp_path, aggregation, expected):
    clock = Clock()
    log = _open(tmp_path / "g.db", clock, wait_s=60, aggregation=aggregation)
    log.log([_row("a", "u")])
    log.add_feedback("a", 1.0, "u", key="1")
    clock.now += 1
    log.add_feedback("a", 0.0, "u", key="2")
    assert log.take_ready() == []  # latest / mean wait for wait_s
    clock.now += 60
    (r,) = log.take_ready()
    assert r.reward == expected


def test_reopen_joins_feedback_and_requeues_the_lost_buffer(tmp_path):
    clock = Clock()
    path = tmp_path / "r.db"
    log = _open(path, clock)
    log.log([_row("a", "u"), _row("b", "u")])
    log.add_feedback("a", 1.0, "u")
    assert [r.id for r in log.take_ready()] == ["a"]  # queued in a buffer that then dies
    log.close()
    again = _open(path, clock)
    again.add_feedback("b", 0.0, "u")  # rated after the restart
    assert sorted(r.id for r in again.take_ready()) == ["a", "b"]


def test_forget_deletes_and_refuses_and_trained_on_remains(tmp_path):
    log = _open(tmp_path / "f.db", Clock())
    a, b = log.user_key("alice"), log.user_key("bob")
    log.log([_row("a1", a), _row("b1", b)])
    log.add_feedback("a1", 1.0, a)
    log.mark_trained([("a1", a)], version=4)
    assert log.forget(a) == {"responses": 1, "feedback": 1}
    assert log.response("a1") is None and log.response("b1") is not None
    with pytest.raises(InvalidInput, match="forgotten"):
        log.add_feedback("b1", 1.0, a)
    assert log.trained_on(a) == {4: 1}
