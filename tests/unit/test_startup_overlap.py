"""cluster/startup: overlap runs both jobs at once (either one's error reaches the caller);
lean_local_ray turns off what an embedded Ray does for nobody."""

import os
import threading

import pytest

from rewardloop.cluster.startup import overlap


def test_the_background_job_runs_while_the_foreground_one_does():
    # The background job can only finish once the foreground one has started, and the
    # foreground one only once the background one has: run one after the other, they deadlock.
    started = {"fg": threading.Event(), "bg": threading.Event()}
    seen = []

    def background():
        started["bg"].set()
        assert started["fg"].wait(timeout=30), "foreground never started"
        seen.append("bg")

    def foreground():
        started["fg"].set()
        assert started["bg"].wait(timeout=30), "background never started"
        seen.append("fg")

    overlap(background, foreground)
    assert sorted(seen) == ["bg", "fg"]


def test_a_background_error_is_raised_after_the_foreground_job_finished():
    done = []

    def background():
        raise ValueError("model build failed")

    with pytest.raises(ValueError, match="model build failed"):
        overlap(background, lambda: done.append("fg"))
    assert done == ["fg"]


def test_a_foreground_error_wins_and_the_background_job_is_waited_for():
    finished = threading.Event()

    def foreground():
        raise RuntimeError("ray did not start")

    with pytest.raises(RuntimeError, match="ray did not start"):
        overlap(finished.set, foreground)
    assert finished.is_set()


def test_lean_local_ray_sets_its_defaults_only_for_an_embedded_ray(monkeypatch):
    from rewardloop.cluster.startup import LEAN_RAY_ENV, lean_local_ray

    for name in [*LEAN_RAY_ENV, "RAY_ADDRESS"]:
        monkeypatch.delenv(name, raising=False)
    lean_local_ray("ray://head:10001")  # attaching to a cluster: its own settings stand
    assert not any(name in os.environ for name in LEAN_RAY_ENV)
    monkeypatch.setenv("RAY_task_events_report_interval_ms", "1000")  # the user's value wins
    lean_local_ray("")
    assert os.environ["RAY_task_events_report_interval_ms"] == "1000"
    assert os.environ["RAY_enable_metrics_collection"] == "0"
