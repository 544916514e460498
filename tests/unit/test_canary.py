"""The canary router: sticky shares, a promotion and a rollback from deterministic rewards,
the Welch statistic against a hand computation, timeout, pin and operator rollback."""

from __future__ import annotations

import math

from rewardloop.serving.canary import Arm, CanaryRouter, welch_noninferior


def _users(n: int = 400) -> list[str]:
    return [f"user-{i}" for i in range(n)]


def test_share_is_sticky_and_close_to_the_fraction():
    router = CanaryRouter(0, fraction=0.25, window=10)
    router.propose(1, now=0.0)
    first = {u: router.route(u) for u in _users()}
    assert all(router.route(u) == v for u, v in first.items())
    share = sum(v == 1 for v in first.values()) / len(first)
    assert 0.18 < share < 0.32


def _feed(router, canary_reward, stable_reward, n=40):
    """Deterministic rewards: alternating 0/1 patterns with the given means (x / 4)."""
    for i in range(n):
        router.observe(router.canary, float(i % 4 < canary_reward), served_at=1.0)
        router.observe(router.stable, float(i % 4 < stable_reward), served_at=1.0)


def test_promoted_when_not_worse():
    router = CanaryRouter(0, fraction=0.2, window=40, alpha=0.05)
    router.propose(1, now=0.0)
    _feed(router, canary_reward=3, stable_reward=3, n=39)
    assert router.decide(now=10.0) is None  # the window is not full yet
    _feed(router, canary_reward=3, stable_reward=3, n=1)
    d = router.decide(now=10.0)
    assert d.action == "promote" and router.stable == 1 and router.canary is None
    assert router.snapshot()["counts"]["promoted"] == 1


def test_rolled_back_when_worse():
    router = CanaryRouter(0, fraction=0.2, window=40, alpha=0.05)
    router.propose(1, now=0.0)
    _feed(router, canary_reward=1, stable_reward=3)
    d = router.decide(now=10.0)
    assert d.action == "rollback" and d.p < 0.05
    assert router.stable == 0 and router.canary is None
    assert router.versions[1].status == "rolled_back"
    router.propose(2, now=11.0)  # the next version gets its own canary
    assert router.canary == 2


def test_welch_statistic_by_hand():
    c, s = Arm(), Arm()
    for r in (1, 0, 1, 1):
        c.add(r)
    for r in (1, 1, 1, 0, 1, 1):
        s.add(r)
    var_c, var_s = 0.25, (5 - 25 / 6) / 5
    z = (0.75 - 5 / 6 + 0.1) / math.sqrt(var_c / 4 + var_s / 6)
    got_z, got_p = welch_noninferior(c, s, margin=0.1)
    assert math.isclose(got_z, z) and math.isclose(got_p, 0.5 * (1 + math.erf(z / math.sqrt(2))))


def test_rewards_served_before_the_canary_do_not_count():
    router = CanaryRouter(0, fraction=0.5, window=2)
    router.propose(1, now=100.0)
    router.observe(0, 0.0, served_at=50.0)
    assert router.arms["stable"].n == 0 and router.versions[0].rated == 1


def test_timeout_rolls_back_and_pin_and_operator_rollback():
    router = CanaryRouter(0, fraction=0.5, window=50, timeout_s=60)
    router.propose(1, now=0.0)
    assert router.decide(now=61.0).reason.startswith("timeout")
    router.pin(0)
    assert router.propose(2, now=62.0) is None  # pinned: no canaries
    assert {router.route(u) for u in _users(50)} == {0}
    router.pin(None)
    router.propose(2, now=63.0)
    d = router.rollback(0, now=64.0)
    assert d.action == "manual_rollback" and router.canary is None and router.stable == 0


def test_lifetime_reference_judges_against_all_of_the_stables_ratings():
    """Same canary, same concurrent window: even against the stable's short concurrent window
    it passes; against the stable's whole record (reference=lifetime) it is rolled back."""
    decisions = {}
    for reference in ("concurrent", "lifetime"):
        router = CanaryRouter(0, fraction=0.5, window=20, alpha=0.05, reference=reference)
        for i in range(200):  # the stable's record before this canary: 3 in 4 liked
            router.observe(0, float(i % 4 < 3), served_at=10.0)
        router.propose(1, now=100.0)
        for i in range(20):  # the concurrent window: both arms 1 in 2
            router.observe(1, float(i % 2), served_at=101.0)
            router.observe(0, float(i % 2), served_at=101.0)
        decisions[reference] = router.decide(now=110.0)
    assert decisions["concurrent"].action == "promote" and decisions["concurrent"].n_stable == 20
    lifetime = decisions["lifetime"]
    assert lifetime.action == "rollback" and lifetime.n_stable == 220 and lifetime.p < 0.05
    assert lifetime.to_json()["reference"] == "lifetime"
