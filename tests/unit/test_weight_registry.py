"""WeightRegistry: newest and recent versions, the capped long-poll, and readers on many threads.

Threads are synchronized on what the registry reports (`waiters`, results), polled with a
deadline; no sleep stands in for "the other thread has got there by now"."""

from __future__ import annotations

import threading
import time

import pytest

from rewardloop.learner.weight_registry import WeightRegistry


def eventually(predicate, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def start(target, *args) -> tuple[threading.Thread, list]:
    out: list = []
    thread = threading.Thread(target=lambda: out.append(target(*args)), daemon=True)
    thread.start()
    return thread, out


def test_empty_registry_has_nothing():
    reg = WeightRegistry()
    assert reg.version == -1 and reg.versions() == []
    assert reg.latest(-1) is None and reg.get(0) is None
    assert reg.wait_for_newer(-1, 0.0) is None


def test_latest_is_newer_than_what_the_caller_has():
    reg = WeightRegistry()
    reg.publish(0, {"v": 0})
    reg.publish(1, {"v": 1})
    assert reg.latest() == (1, {"v": 1})
    assert reg.latest(0) == (1, {"v": 1})
    assert reg.latest(1) is None and reg.latest(5) is None
    assert reg.get(0) == {"v": 0} and reg.version == 1


def test_only_the_recent_versions_are_kept():
    reg = WeightRegistry(keep=3)
    for v in range(6):
        reg.publish(v, f"payload-{v}")
    assert reg.versions() == [3, 4, 5]
    assert reg.get(2) is None and reg.get(3) == "payload-3"


def test_versions_only_grow_and_the_newest_can_be_replaced():
    reg = WeightRegistry(keep=2)
    reg.publish(3, "a")
    with pytest.raises(ValueError, match="older than the newest"):
        reg.publish(2, "b")
    reg.publish(3, "c")
    assert reg.latest() == (3, "c") and reg.versions() == [3]
    reg.publish(7, "d")  # versions may skip
    assert reg.versions() == [3, 7]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="keep"):
        WeightRegistry(keep=0)
    with pytest.raises(ValueError, match="max_wait_s"):
        WeightRegistry(max_wait_s=0)


def test_wait_answers_at_once_when_a_newer_version_exists():
    reg = WeightRegistry(max_wait_s=60)
    reg.publish(0, "zero")
    t0 = time.monotonic()
    assert reg.wait_for_newer(-1, 60) == (0, "zero")
    assert time.monotonic() - t0 < 5


def test_wait_blocks_until_a_newer_version_is_published():
    reg = WeightRegistry(max_wait_s=60)
    reg.publish(0, "zero")
    thread, out = start(reg.wait_for_newer, 0, 60)
    assert eventually(lambda: reg.waiters == 1)
    assert out == [] and thread.is_alive()
    reg.publish(0, "zero again")  # not newer: the waiter keeps waiting
    assert reg.waiters == 1 and out == []
    reg.publish(1, "one")
    thread.join(timeout=10)
    assert out == [(1, "one")] and reg.waiters == 0


def test_wait_is_capped_and_negative_timeouts_do_not_wait():
    reg = WeightRegistry(max_wait_s=0.05)
    t0 = time.monotonic()
    assert reg.wait_for_newer(-1, 3600) is None  # held 0.05 s, not an hour
    assert reg.wait_for_newer(-1, -1.0) is None
    assert time.monotonic() - t0 < 5 and reg.waiters == 0


def test_one_publish_wakes_every_waiter():
    reg = WeightRegistry(max_wait_s=60)
    started = [start(reg.wait_for_newer, -1, 60) for _ in range(8)]
    assert eventually(lambda: reg.waiters == 8)
    reg.publish(0, "zero")
    for thread, out in started:
        thread.join(timeout=10)
        assert out == [(0, "zero")]


def test_readers_on_many_threads_see_versions_in_order_with_their_payloads():
    reg = WeightRegistry(keep=4, max_wait_s=1.0)
    last = 200
    problems: list[str] = []

    def reader(long_poll: bool) -> int:
        have = -1
        while have < last:
            got = reg.wait_for_newer(have, 1.0) if long_poll else reg.latest(have)
            if got is None:
                continue
            version, payload = got
            if version <= have or payload != {"v": version}:
                problems.append(f"{have} -> {got}")
            have = version
        return have

    readers = [start(reader, i % 2 == 0) for i in range(6)]
    for v in range(last + 1):
        reg.publish(v, {"v": v})
    for thread, out in readers:
        thread.join(timeout=30)
        assert out == [last]
    assert problems == [] and reg.versions() == [197, 198, 199, 200]
