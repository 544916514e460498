"""rewardloop.periodic.Periodic: a failing round is logged and counted, the next one runs; stop()
ends a thread that sleeps through a long period at once."""

import logging
import threading

from rewardloop.periodic import Periodic

LOG = logging.getLogger("test.periodic")


def test_a_failing_round_is_logged_and_counted_and_the_next_one_runs(caplog):
    calls = 0
    second = threading.Event()

    def fn():
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        second.set()

    ticker = Periodic(fn, 0.01, what="test round", log=LOG, name="test-periodic").start()
    try:
        assert second.wait(10.0), "the round after the failing one never ran"
    finally:
        ticker.stop(timeout_s=5.0)
    assert ticker.errors == 1
    assert [r.getMessage() for r in caplog.records if r.name == LOG.name] == ["test round failed"]
    assert not ticker._thread.is_alive()


def test_stop_wakes_a_thread_that_waits_out_a_long_period():
    calls = []
    ticker = Periodic(lambda: calls.append(1), 3600.0, what="never", log=LOG).start()
    ticker.stop(timeout_s=5.0)
    assert not ticker._thread.is_alive()
    assert calls == [] and ticker.errors == 0
