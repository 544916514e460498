"""CreditLedger in whole groups, its pause/resume gate, and the staleness bound it gives N workers.

The last tests drive the real CreditLedger and TrajectoryBuffer with a small discrete-time
model of the loop (a learner that takes, trains and publishes; workers that generate with the
newest weights as many groups as their credits cover): with the automatic capacity no
trajectory arrives past max_staleness, whatever the number or speed of the workers, while the
previous sizing (a whole generation per worker) drops many.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from rewardloop.learner.buffer import TrajectoryBuffer
from rewardloop.learner.credits import CreditLedger
from rewardloop.trajectory import Trajectory


def _total(ledger: CreditLedger) -> int:
    snap = ledger.snapshot()
    return sum(snap["outstanding"].values()) + sum(snap["held"].values()) + snap["free"]


def test_grants_are_whole_units():
    ledger = CreditLedger(capacity=24, unit=8)
    assert ledger.open_stream("s1", "w1") == 24
    assert ledger.open_stream("s2", "w2") == 0
    ledger.consume("s1", 24)
    # w1 hands back one group: the idle stream s2 gets it (least usage), as a whole unit.
    assert ledger.release("w1", 8) == [("s2", 8)]
    # Now tied (w1: 8 held, s2: 8 outstanding): the releasing worker gets its group back.
    assert ledger.release("w1", 8) == [("s1", 8)]
    ledger.consume("s1", 8)
    # w1 returns 16: s1 (usage 0) gets a unit, then ties with s2 (8) and wins it as the releaser.
    assert ledger.release("w1", 16) == [("s1", 16)]
    assert _total(ledger) == 24 and ledger.snapshot()["outstanding"] == {"s1": 16, "s2": 8}


def test_partial_releases_wait_in_the_pool_until_they_make_a_unit():
    ledger = CreditLedger(capacity=16, unit=8)
    assert ledger.open_stream("s1", "w1") == 16
    ledger.consume("s1", 16)
    assert ledger.release("w1", 3) == []  # 3 free: not a whole group
    assert ledger.snapshot()["free"] == 3
    assert ledger.release("w1", 4) == []
    assert ledger.release("w1", 1) == [("s1", 8)]
    assert ledger.snapshot()["free"] == 0 and _total(ledger) == 16


def test_open_stream_share_is_rounded_to_units():
    ledger = CreditLedger(capacity=30, unit=8)  # 30 is not a multiple of 8: 6 never granted
    assert ledger.open_stream("s1", "w1") == 24
    ledger.close_stream("s1")
    assert ledger.open_stream("s2", "w2") == 24
    assert ledger.open_stream("s3", "w3") == 0  # share 8, but only 6 free


def test_unit_larger_than_capacity_is_clamped():
    ledger = CreditLedger(capacity=4, unit=8)
    assert ledger.unit == 4 and ledger.open_stream("s1", "w1") == 4


def test_pause_holds_grants_until_resume():
    ledger = CreditLedger(capacity=16, unit=8)
    ledger.open_stream("s1", "w1")
    ledger.consume("s1", 16)
    ledger.pause()
    assert ledger.release("w1", 16) == []
    assert ledger.open_stream("s2", "w2") == 0  # nothing while paused, even when free
    assert ledger.snapshot()["paused"] and ledger.snapshot()["free"] == 16
    grants = dict(ledger.resume())
    assert grants == {"s1": 8, "s2": 8}
    assert ledger.release("w1", 1) == []  # nothing held any more: ignored
    assert _total(ledger) == 16


def test_random_operations_keep_the_invariant_and_grant_whole_units():
    rng = random.Random(5)
    ledger = CreditLedger(capacity=40, unit=8)
    open_streams: dict[str, str] = {}
    for i in range(2000):
        op = rng.random()
        if op < 0.1 and len(open_streams) < 4:
            sid = f"s{i}"
            open_streams[sid] = f"w{rng.randrange(3)}"
            granted = [(sid, ledger.open_stream(sid, open_streams[sid]))]
        elif op < 0.15 and open_streams:
            sid = rng.choice(sorted(open_streams))
            del open_streams[sid]
            granted = ledger.close_stream(sid)
        elif op < 0.55 and open_streams:
            ledger.consume(rng.choice(sorted(open_streams)), rng.randrange(1, 10))
            granted = []
        elif op < 0.6:
            ledger.pause()
            granted = []
        elif op < 0.65:
            granted = ledger.resume()
        else:
            granted = ledger.release(f"w{rng.randrange(3)}", rng.randrange(1, 10))
        assert all(k % 8 == 0 for _, k in granted), granted
        assert _total(ledger) == 40
        assert ledger.snapshot()["free"] >= 0


def test_rejects_bad_unit():
    with pytest.raises(ValueError, match="unit"):
        CreditLedger(capacity=8, unit=0)


def test_buffer_takes_the_oldest_weights_first():
    """A fast worker's newer group must not overtake an older one that is about to go stale."""
    buf = TrajectoryBuffer(capacity=8, max_staleness=2)

    def group(gid: str, version: int) -> None:
        for j in range(2):
            t = Trajectory(f"{gid}{j}", gid, [1], [2], [-1.0], float(j), version, group_size=2)
            assert buf.add(t, 2)[0] == "accepted"

    group("new", 2)
    group("old", 0)
    group("mid", 1)
    taken = buf.take_groups(2, 2, timeout_s=0)
    assert [g[0].group_id for g in taken] == ["old", "mid"]


# ---- the loop, modelled in discrete time ---------------------------------------------------

G, GROUPS_PER_STEP, PROMPTS_PER_GENERATION = 4, 3, 3
STEP = G * GROUPS_PER_STEP


class _Worker:
    def __init__(self, wid: str, ticks_per_group: int):
        self.wid, self.ticks_per_group = wid, ticks_per_group
        self.credits = 0
        self.busy_until: int | None = None
        self.batch: list[Trajectory] = []


def simulate(
    n_workers: int,
    max_staleness: int,
    capacity: int,
    unit: int,
    steps: int = 60,
    train_ticks: int = 3,
    seed: int = 0,
    speeds: tuple[int, int] = (1, 2),
) -> dict:
    """Run the loop until `steps` steps; returns the buffer's stats and the workers' groups.

    Every tick: the learner finishes a step (publishes version + 1, resumes grants when
    strictly on-policy) or takes a step's groups (pausing grants first when strictly
    on-policy); each idle worker with credits for a group generates min(credits / G,
    prompts_per_generation) groups with the newest weights, which takes ticks in proportion
    to the groups (1-2 ticks a group: workers differ in speed), and then sends them within
    its credits."""
    rng = random.Random(seed)
    buffer = TrajectoryBuffer(capacity=capacity, max_staleness=max_staleness)
    ledger = CreditLedger(capacity, unit=unit)
    workers = {
        f"w{i}": _Worker(f"w{i}", ticks_per_group=rng.randint(*speeds)) for i in range(n_workers)
    }

    def grant(grants):
        for sid, k in grants:
            workers[sid].credits += k

    buffer.on_release = lambda wid, n: grant(ledger.release(wid, n))
    for w in workers.values():
        w.credits = ledger.open_stream(w.wid, w.wid)
    version, done_at, taken_steps, ids = 0, None, 0, 0
    groups_by_worker: Counter[str] = Counter()
    for tick in range(steps * 40):
        if done_at is not None and tick >= done_at:
            version, done_at = version + 1, None  # publish
            if max_staleness == 0:
                grant(ledger.resume())
        if done_at is None and taken_steps < steps:
            if max_staleness == 0:
                ledger.pause()
            taken = buffer.take_groups(GROUPS_PER_STEP, version, timeout_s=0)
            if taken is not None:
                taken_steps += 1
                done_at = tick + train_ticks
            elif max_staleness == 0:
                grant(ledger.resume())
        for w in workers.values():
            if w.busy_until is not None and tick >= w.busy_until:
                allowed = ledger.consume(w.wid, len(w.batch))
                assert allowed == len(w.batch), "a worker sent beyond its credits"
                w.credits -= allowed
                refused = sum(buffer.add(t, version)[0] != "accepted" for t in w.batch)
                grant(ledger.release(w.wid, refused))  # as the ingest server does
                w.batch, w.busy_until = [], None
            if w.busy_until is None and w.credits >= G:
                k = min(PROMPTS_PER_GENERATION, w.credits // G)
                for _ in range(k):
                    ids += 1
                    groups_by_worker[w.wid] += 1
                    w.batch += [
                        Trajectory(
                            id=f"{ids}-{j}",
                            group_id=str(ids),
                            prompt_ids=[1],
                            completion_ids=[2],
                            behavior_logprobs=[-1.0],
                            reward=float(j),
                            policy_version=version,  # the newest weights
                            worker_id=w.wid,
                            group_size=G,
                        )
                        for j in range(G)
                    ]
                w.busy_until = tick + k * w.ticks_per_group
        if taken_steps >= steps and done_at is None:
            break
    return {"steps": taken_steps, "buffer": buffer.stats(), "groups": groups_by_worker}


@pytest.mark.parametrize("n_workers", [1, 2, 3, 5])
@pytest.mark.parametrize("max_staleness", [0, 1, 2])
def test_no_trajectory_arrives_past_max_staleness(n_workers, max_staleness):
    capacity = STEP * max(1, max_staleness)  # config.buffer_capacity's automatic value
    out = simulate(n_workers, max_staleness, capacity, unit=G, seed=n_workers)
    stats = out["buffer"]
    assert out["steps"] == 60, "the loop must keep going (no stall on split groups)"
    assert stats["dropped_stale"] == 0 and stats["rejected_total"] == 0
    assert max(stats["lag_hist"]) <= max_staleness
    assert stats["dropped_incomplete"] == 0
    # The staleness budget holds GROUPS_PER_STEP x max(1, max_staleness) groups: that many
    # workers at most can be generating at once (more add nothing but are not harmful).
    assert len(out["groups"]) >= min(n_workers, GROUPS_PER_STEP * max(1, max_staleness))


def test_a_generation_per_worker_of_capacity_drops_stale_data():
    """The sizing this replaces: capacity = workers x a whole generation, credits one by one.
    Data generated on credits freed at version V queues behind another worker's generation
    and is trained two versions later: dropped with max_staleness 1."""
    out = simulate(2, 1, capacity=2 * PROMPTS_PER_GENERATION * G, unit=1, seed=2)
    assert out["buffer"]["dropped_stale"] + out["buffer"]["rejected_total"] > 0
