"""TrajectoryBuffer and CreditLedger: admission, grouping, staleness, release, credit invariants."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from rewardloop.learner.buffer import TrajectoryBuffer
from rewardloop.learner.credits import CreditLedger
from rewardloop.trajectory import Trajectory


def traj(
    tid: str, group: str, version: int = 0, group_size: int = 1, worker: str = "w1"
) -> Trajectory:
    return Trajectory(
        id=tid,
        group_id=group,
        prompt_ids=[1, 2],
        completion_ids=[3, 4],
        behavior_logprobs=[-0.5, -0.7],
        reward=1.0,
        policy_version=version,
        worker_id=worker,
        group_size=group_size,
    )


class Releases:
    """A real on_release target that records what came back."""

    def __init__(self) -> None:
        self.by_worker: Counter[str] = Counter()

    def __call__(self, worker_id: str, n: int) -> None:
        self.by_worker[worker_id] += n


# ---- TrajectoryBuffer ---------------------------------------------------------------------


def test_accept_duplicate_and_reject_reasons():
    buf = TrajectoryBuffer(capacity=8, max_staleness=1)
    assert buf.add(traj("a", "g1", version=5), current_version=5) == ("accepted", "")
    assert buf.add(traj("a", "g1", version=5), current_version=5) == ("duplicate", "")
    status, reason = buf.add(traj("old", "g2", version=3), current_version=5)
    assert status == "rejected" and reason.startswith("policy_version") and "4" in reason
    status, reason = buf.add(traj("fut", "g3", version=6), current_version=5)
    assert status == "rejected" and reason.startswith("policy_version") and "future" in reason
    s = buf.stats()
    assert (s["accepted"], s["duplicate"], s["rejected"]) == (1, 1, {"policy_version": 2})


def test_buffer_full_is_a_counted_rejection():
    buf = TrajectoryBuffer(capacity=2, max_staleness=0)
    for i in range(2):
        assert buf.add(traj(f"t{i}", f"g{i}"), 0)[0] == "accepted"
    assert buf.add(traj("t2", "g2"), 0) == ("rejected", "buffer full")
    assert buf.stats()["rejected"] == {"buffer full": 1}
    assert len(buf) == 2


def test_take_groups_fifo_complete_only_and_releases():
    rel = Releases()
    buf = TrajectoryBuffer(capacity=16, max_staleness=2, on_release=rel)
    buf.add(traj("a1", "A", group_size=2, worker="w1"), 0)
    buf.add(traj("b1", "B", group_size=2, worker="w2"), 0)
    buf.add(traj("b2", "B", group_size=2, worker="w2"), 0)
    buf.add(traj("c1", "C", group_size=1, worker="w1"), 0)
    buf.add(traj("a2", "A", group_size=2, worker="w1"), 0)
    groups = buf.take_groups(2, current_version=1, timeout_s=1.0)
    # A arrived first, then B; C is complete too but comes third.
    assert [[t.id for t in g] for g in groups] == [["a1", "a2"], ["b1", "b2"]]
    assert rel.by_worker == {"w1": 2, "w2": 2}
    s = buf.stats()
    assert s["taken"] == 4 and s["size"] == 1 and s["groups_complete"] == 1
    assert s["lag_mean"] == 1.0 and s["lag_hist"] == {1: 4}
    # Ids stay remembered after training; a late member of a taken group is refused.
    assert buf.add(traj("a1", "A", group_size=2), 1) == ("duplicate", "")
    status, reason = buf.add(traj("a3", "A", group_size=2), 1)
    assert status == "rejected" and reason.startswith("group_id")


def test_take_groups_times_out_with_none_and_keeps_items():
    buf = TrajectoryBuffer(capacity=4, max_staleness=0)
    buf.add(traj("a1", "A", group_size=2), 0)
    assert buf.take_groups(1, current_version=0, timeout_s=0.05) is None
    assert len(buf) == 1


def test_take_groups_wakes_when_a_group_completes():
    buf = TrajectoryBuffer(capacity=4, max_staleness=0)
    buf.add(traj("a1", "A", group_size=2), 0)
    out: list = []
    waiter = threading.Thread(target=lambda: out.append(buf.take_groups(1, 0, timeout_s=10.0)))
    waiter.start()
    buf.add(traj("a2", "A", group_size=2), 0)
    waiter.join(timeout=10.0)
    assert not waiter.is_alive()
    assert [t.id for t in out[0][0]] == ["a1", "a2"]


def test_stale_items_dropped_at_take_time_and_released():
    rel = Releases()
    buf = TrajectoryBuffer(capacity=8, max_staleness=1, on_release=rel)
    buf.add(traj("old1", "OLD", version=0, group_size=2), 0)
    buf.add(traj("old2", "OLD", version=0, group_size=2), 0)
    buf.add(traj("new1", "NEW", version=1, group_size=1), 1)
    # Learner is now at version 2: version 0 is 2 behind, beyond max_staleness=1.
    groups = buf.take_groups(1, current_version=2, timeout_s=0.5)
    assert [[t.id for t in g] for g in groups] == [["new1"]]
    s = buf.stats()
    assert s["dropped_stale"] == 2 and s["size"] == 0
    assert rel.by_worker == {"w1": 3}


def test_stale_member_breaks_its_group():
    buf = TrajectoryBuffer(capacity=8, max_staleness=0)
    buf.add(traj("m1", "G", version=0, group_size=3), 0)
    buf.add(traj("m2", "G", version=1, group_size=3), 1)
    assert buf.prune(current_version=1) == 2
    s = buf.stats()
    assert (s["dropped_stale"], s["dropped_incomplete"], s["size"]) == (1, 1, 0)


def test_partial_group_expires_and_is_released():
    rel = Releases()
    buf = TrajectoryBuffer(
        capacity=8, max_staleness=0, on_release=rel, partial_group_timeout_s=0.05
    )
    buf.add(traj("p1", "P", group_size=4, worker="dead"), 0)
    buf.add(traj("q1", "Q", group_size=1, worker="w1"), 0)
    time.sleep(0.1)
    groups = buf.take_groups(2, current_version=0, timeout_s=0.2)
    assert groups is None  # only Q is complete; P expired
    s = buf.stats()
    assert s["dropped_incomplete"] == 1 and s["size"] == 1
    assert rel.by_worker == {"dead": 1}


def test_group_size_mismatch_rejected():
    buf = TrajectoryBuffer(capacity=8, max_staleness=0)
    buf.add(traj("a", "G", group_size=2), 0)
    status, reason = buf.add(traj("b", "G", group_size=3), 0)
    assert status == "rejected" and reason.startswith("group_size")


def test_close_wakes_waiters():
    buf = TrajectoryBuffer(capacity=2, max_staleness=0)
    out: list = []
    waiter = threading.Thread(target=lambda: out.append(buf.take_groups(1, 0, timeout_s=10.0)))
    waiter.start()
    buf.close()
    waiter.join(timeout=5.0)
    assert not waiter.is_alive() and out == [None]


def test_concurrent_adds_count_exactly():
    buf = TrajectoryBuffer(capacity=10_000, max_staleness=0)

    def adder(k: int) -> None:
        for i in range(200):
            buf.add(traj(f"{i}", f"g{k}-{i}"), 0)  # same ids across threads: duplicates

    threads = [threading.Thread(target=adder, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10.0)
    s = buf.stats()
    assert s["accepted"] == 200 and s["duplicate"] == 600 and s["size"] == 200


# ---- CreditLedger -------------------------------------------------------------------------


def _total(ledger: CreditLedger) -> int:
    snap = ledger.snapshot()
    return sum(snap["outstanding"].values()) + sum(snap["held"].values()) + snap["free"]


def test_ledger_fair_share_and_invariant():
    ledger = CreditLedger(capacity=10)
    assert ledger.open_stream("s1", "w1") == 10  # alone: the whole capacity
    assert ledger.open_stream("s2", "w2") == 0  # nothing free yet
    assert ledger.consume("s1", 4) == 4
    # s2 is short, so returned credits fill it first (water-filling on usage).
    assert ledger.release("w1", 4) == [("s2", 4)]
    assert _total(ledger) == 10 and ledger.snapshot()["free"] == 0


def test_ledger_consume_caps_at_credits():
    ledger = CreditLedger(capacity=3)
    ledger.open_stream("s1", "w1")
    assert ledger.consume("s1", 5) == 3
    assert ledger.snapshot()["held"] == {"w1": 3}
    assert ledger.consume("s1", 1) == 0


def test_ledger_returns_to_the_releasing_worker_when_balanced():
    ledger = CreditLedger(capacity=4)
    assert ledger.open_stream("s1", "w1") == 4
    ledger.consume("s1", 4)
    assert ledger.release("w1", 3) == [("s1", 3)]
    assert ledger.release("w1", 5) == [("s1", 1)]  # only what it held
    assert ledger.release("nobody", 2) == []


def test_ledger_close_stream_hands_credits_to_others():
    ledger = CreditLedger(capacity=6)
    assert ledger.open_stream("s1", "w1") == 6
    assert ledger.open_stream("s2", "w2") == 0
    assert ledger.close_stream("s1") == [("s2", 6)]
    assert ledger.snapshot()["outstanding"] == {"s2": 6}


def test_ledger_held_released_after_stream_closed_goes_to_live_stream():
    ledger = CreditLedger(capacity=4, held={"gone": 3})
    assert ledger.open_stream("s1", "w1") == 1
    assert ledger.release("gone", 3) == [("s1", 3)]
    assert _total(ledger) == 4


def test_ledger_rejects_bad_capacity():
    with pytest.raises(ValueError, match="capacity"):
        CreditLedger(0)
