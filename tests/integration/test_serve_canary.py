"""Safe rollout end to end on a real stack: a canary rolled back when its users dislike it
(the learner goes back to the stable weights), the next one promoted, both recorded; and
`rewardloop versions | pin | rollback` over the admin endpoint."""

from __future__ import annotations

import json

import pytest
import torch
from serve_testutil import build, client

from rewardloop.serving.commands import admin_call

PROMPT = "Friday night feed for bob"


@pytest.fixture
def served(model_cache, tmp_path):
    st = build(tmp_path, "serve.train_batch=4", "serve.canary_fraction=0.5",
               "serve.canary_window=6", "serve.max_version_lag=50")  # fmt: skip
    yield st
    st.stop()


def _serve_and_rate(st, users, rate) -> dict[int, int]:
    """One request per user, rated `rate(version)` (deterministic); {version: served}."""
    c, seen = client(st), {}
    for user in users:
        r = c.completions.create(model="rewardloop", prompt=PROMPT, user=user)
        version = int(r.system_fingerprint[1:])
        seen[version] = seen.get(version, 0) + 1
        st.core.feedback(r.id, rate(version), user, f"k-{r.id}")
    return seen


def test_canary_rolled_back_then_promoted(served, tmp_path):
    st = served
    _serve_and_rate(st, [f"u{i}" for i in range(4)], lambda v: 1.0)
    st.loop.tick()
    canary = st.router.canary
    assert canary == st.learner.version >= 1 and st.engine.versions() == [0, canary]
    seen = _serve_and_rate(st, [f"u{i}" for i in range(40)],
                           lambda v: 0.0 if v == canary else 1.0)  # fmt: skip
    assert seen[0] >= 6 and seen[canary] >= 6  # sticky halves of 40 users
    (decision,) = st.loop.tick()
    assert decision.action == "rollback" and st.router.stable == 0
    stable = st.loop.states[0]
    assert all(torch.equal(p, stable[k]) for k, p in st.learner.trainer.model.state_dict().items())

    st.loop.tick()  # the next version becomes the canary
    second = st.router.canary
    assert second is not None and second > canary
    _serve_and_rate(st, [f"w{i}" for i in range(40)], lambda v: 1.0)
    decisions = st.loop.tick()
    assert [d.action for d in decisions] == ["promote"] and st.router.stable == second
    rows = [json.loads(line) for line in (tmp_path / "canary_decisions.jsonl").open()]
    assert [r["action"] for r in rows] == ["rollback", "promote"]
    snap = admin_call(str(tmp_path), "versions", {})
    status = {v["version"]: v["status"] for v in snap["versions"]}
    assert status[canary] == "rolled_back" and status[second] == "stable"
    assert snap["counts"]["rolled_back"] == 1 and snap["counts"]["promoted"] == 1


def test_pin_and_operator_rollback(served, tmp_path):
    st = served
    _serve_and_rate(st, [f"u{i}" for i in range(4)], lambda v: 1.0)
    st.loop.tick()
    canary = st.router.canary
    assert admin_call(str(tmp_path), "pin", {"version": canary}) == {"pinned": canary}
    assert _serve_and_rate(st, ["a", "b", "c"], lambda v: 1.0) == {canary: 3}
    admin_call(str(tmp_path), "pin", {"version": None})
    d = admin_call(str(tmp_path), "rollback", {"version": 0})
    assert d["action"] == "manual_rollback" and st.router.stable == 0 and st.router.canary is None
    with pytest.raises(Exception, match="not kept"):
        admin_call(str(tmp_path), "rollback", {"version": 999})


def test_rolled_back_version_is_not_proposed_again(model_cache, tmp_path):
    """With serve.max_train_ahead=1 the learner waits while its canary is judged; after the
    rollback it holds the stable's weights, so it trains the next version (from those weights)
    rather than waiting forever or re-proposing the rolled-back number with its old weights."""
    st = build(tmp_path, "serve.train_batch=4", "serve.canary_fraction=0.5",
               "serve.canary_window=6", "serve.max_version_lag=50",
               "serve.max_train_ahead=1")  # fmt: skip
    try:
        _serve_and_rate(st, [f"u{i}" for i in range(4)], lambda v: 1.0)
        st.loop.tick()
        assert st.router.canary == st.learner.version == 1
        _serve_and_rate(st, [f"u{i}" for i in range(40)], lambda v: 0.0 if v == 1 else 1.0)
        (decision,) = st.loop.tick()  # paused (1 ahead of stable 0): no step, then judged
        assert decision.action == "rollback" and st.learner.version == 1
        st.loop.tick()  # the 40 ratings buffered meanwhile: one step from the stable weights
        assert st.learner.version == 2 and st.router.canary == 2
        assert st.router.versions[1].status == "rolled_back"
        assert st.router.counts["proposed"] == 2
    finally:
        st.stop()
