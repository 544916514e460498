"""The driver's verdict on a dead rollout worker (cluster/restarts.py), from the GCS's answers."""

from __future__ import annotations

from rewardloop.cluster.restarts import RUN, WAIT, RestartBook


class _Died(Exception):
    pass


def test_waits_for_the_restart_then_runs_again_and_counts_from_the_gcs():
    book = RestartBook(max_restarts=2)
    # the error can reach the driver before the GCS has seen the death: still ALIVE, 0 restarts
    assert book.died("w1", _Died("socket closed"), "ALIVE", 0) == WAIT
    assert book.check("w1", "RESTARTING", 1) == WAIT
    assert book.check("w1", "ALIVE", 1) == RUN
    assert book.used == {"w1": 1} and "w1" not in book.waiting
    assert [e["restart"] for e in book.new_events()] == [1]
    assert book.new_events() == []  # each death is told once
    # died again and already restarted when the driver looks: one more, not two
    assert book.died("w1", _Died("socket closed"), "ALIVE", 2) == RUN
    assert book.used == {"w1": 2}


def test_dead_for_good_names_the_worker_the_restarts_and_the_key():
    book = RestartBook(max_restarts=1)
    book.died("w0", _Died("x"), "RESTARTING", 1)
    assert book.check("w0", "ALIVE", 1) == RUN
    reason = book.died("w0", _Died("The actor died unexpectedly"), "DEAD", 1)
    assert reason.startswith("w0: its process died again")
    assert "after 1 restart(s)" in reason and "rollout.max_restarts=1" in reason
    assert [e["restart"] for e in book.summary()["deaths"]] == [1, 0]


def test_no_restarts_allowed_says_which_key_turns_them_on():
    book = RestartBook(max_restarts=0)
    reason = book.died("w0", _Died("gone"), "DEAD", 0)
    assert "rollout.max_restarts=0 allows no restart" in reason and reason.startswith("w0:")
    assert book.used == {}


def test_a_lost_call_on_a_live_worker_is_retried_after_settling():
    book = RestartBook(max_restarts=3, settle_s=0.0)
    assert book.died("w2", _Died("unavailable"), "ALIVE", 0) == RUN  # no restart happened
    assert book.used == {} and book.new_events() == []
