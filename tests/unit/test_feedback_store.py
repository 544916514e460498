"""The durable feedback store: idempotency, durability, expiry, delivery, forget, retention."""

import math

import pytest

from rewardloop.errors import InvalidInput, NotFound
from rewardloop.feedback.gateway.records import Item
from rewardloop.feedback.gateway.store import DAY_S, FeedbackStore


class Clock:
    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def items(*ids: str) -> list[Item]:
    return [Item(i, f"prompt {i}", f"completion {i}") for i in ids]


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(tmp_path, clock):
    s = FeedbackStore(tmp_path / "fb.sqlite3", expiry_s=60, clock=clock)
    yield s
    s.close()


def test_wal_mode_and_pending_order(store, clock):
    assert store.journal_mode == "wal"
    store.publish(items("b"), "pub")
    clock.t += 1
    store.publish(items("a"), "pub")
    assert [it.id for it in store.pending()] == ["b", "a"]  # oldest first


def test_submit_is_idempotent_by_key(store):
    store.publish(items("x", "y"), "pub")
    first = store.submit("x", 1.0, "r-1", key="k1")
    again = store.submit("x", 1.0, "r-1", key="k1")
    assert first.stored and not first.duplicate
    assert again.stored and again.duplicate
    assert store.counters()["rated"] == 1 and store.counters()["duplicates"] == 1
    # without a key, item + rater is the key
    assert not store.submit("y", 0.0, "r-2").duplicate
    assert store.submit("y", 0.0, "r-2").duplicate


def test_second_rater_on_a_rated_item_is_late_not_stored(store):
    store.publish(items("x"), "pub")
    store.submit("x", 1.0, "r-1")
    res = store.submit("x", 0.0, "r-2")
    assert not res.stored and "already rated" in res.reason
    assert store.rating("x")["rater"] == "r-1"


def test_unknown_item_is_not_found(store):
    with pytest.raises(NotFound, match="unknown item 'nope'"):
        store.submit("nope", 1.0, "r-1")


def test_rating_survives_close_and_reopen(tmp_path, clock):
    path = tmp_path / "durable.sqlite3"
    s = FeedbackStore(path, clock=clock)
    s.publish(items("x"), "pub")
    assert s.submit("x", 0.75, "r-1", key="k").stored
    s.close()
    reopened = FeedbackStore(path, clock=clock)
    try:
        assert reopened.rating("x")["value"] == 0.75
        assert reopened.submit("x", 0.75, "r-1", key="k").duplicate
        assert [o.item_id for o in reopened.collect("pub")] == ["x"]
    finally:
        reopened.close()


@pytest.mark.parametrize("outcome", ["drop", "neutral"])
def test_expiry_outcomes(tmp_path, clock, outcome):
    s = FeedbackStore(
        tmp_path / "e.sqlite3", expiry_s=10, expiry_outcome=outcome, neutral_reward=0.5, clock=clock
    )
    s.publish(items("old"), "pub")
    clock.t += 5
    s.publish(items("young"), "pub")
    clock.t += 6  # "old" is 11 s old, "young" 6 s
    assert s.expire() == 1
    assert [it.id for it in s.pending()] == ["young"]
    (o,) = s.collect("pub")
    assert o.item_id == "old" and o.kind == "expired"
    if outcome == "drop":
        assert o.drop and math.isnan(o.reward)
        assert s.counters()["expired_drop"] == 1
    else:
        assert not o.drop and o.reward == 0.5
        assert s.counters()["expired_neutral"] == 1
    late = s.submit("old", 1.0, "r-1")
    assert not late.stored and "expired" in late.reason
    s.close()


def test_collect_resends_until_acked_and_only_to_its_publisher(store):
    store.publish(items("a", "b"), "pub-1")
    store.publish(items("c"), "pub-2")
    for i in "abc":
        store.submit(i, 1.0, "r-1")
    assert sorted(o.item_id for o in store.collect("pub-1")) == ["a", "b"]
    assert sorted(o.item_id for o in store.collect("pub-1")) == ["a", "b"]  # not acked yet
    assert store.collect("pub-1", ack_ids=["a", "b"]) == []
    assert [o.item_id for o in store.collect("pub-2")] == ["c"]


def test_blocked_items_are_never_pending_and_keep_no_text(store):
    store.publish(items("ok", "bad"), "pub", blocked={"bad": "contains a URL"})
    assert [it.id for it in store.pending()] == ["ok"]
    (o,) = store.collect("pub")
    assert (o.item_id, o.kind, o.reward, o.reason) == ("bad", "blocked", -1.0, "contains a URL")
    with store._lock:
        row = store._db.execute("SELECT prompt, completion FROM items WHERE id = 'bad'").fetchone()
    assert row == ("", "")
    assert store.counters()["blocked"] == 1


def test_forget_deletes_ratings_requeues_undelivered_and_refuses_later(store):
    store.publish(items("delivered", "undelivered", "other"), "pub")
    store.submit("delivered", 1.0, "r-gone")
    store.collect("pub", ack_ids=[o.item_id for o in store.collect("pub")])  # deliver it
    store.submit("undelivered", 0.0, "r-gone")
    store.submit("other", 1.0, "r-stay")

    assert store.forget("r-gone") == 2
    assert store.ratings_by("r-gone") == 0 and store.rating("undelivered") is None
    assert store.rating("other")["rater"] == "r-stay"
    assert "undelivered" in [it.id for it in store.pending()]  # back in the queue
    assert [o.item_id for o in store.collect("pub")] == ["other"]  # never the forgotten rating
    with pytest.raises(InvalidInput, match="forgotten"):
        store.submit("undelivered", 1.0, "r-gone")
    assert store.counters()["forgotten_ratings"] == 2


def test_retention_purges_old_ratings_and_finished_items(tmp_path, clock):
    s = FeedbackStore(tmp_path / "r.sqlite3", expiry_s=DAY_S * 100, retention_days=30, clock=clock)
    s.publish(items("old", "new", "waiting"), "pub")
    s.submit("old", 1.0, "r-1")
    clock.t += 20 * DAY_S
    s.submit("new", 1.0, "r-1")
    clock.t += 11 * DAY_S  # "old" rated 31 days ago, "new" 11 days ago
    assert s.purge() == {"ratings": 1, "items": 1}
    assert s.rating("old") is None and s.rating("new") is not None
    assert [it.id for it in s.pending()] == ["waiting"]  # pending items are not purged
    s.close()


def test_retention_zero_keeps_everything(tmp_path, clock):
    s = FeedbackStore(tmp_path / "k.sqlite3", retention_days=0, clock=clock)
    s.publish(items("x"), "pub")
    s.submit("x", 1.0, "r-1")
    clock.t += 1000 * DAY_S
    assert s.purge() == {"ratings": 0, "items": 0}
    assert s.rating("x") is not None
    s.close()
