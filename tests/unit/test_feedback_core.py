"""The gateway's transport-free logic: auth, validation, size limits, the content check."""

import pytest

from rewardloop.config import FeedbackConfig
from rewardloop.errors import InvalidInput, NotFound, PayloadTooLarge, Unauthenticated
from rewardloop.feedback.gateway.core import FeedbackCore, stars_to_value
from rewardloop.feedback.sources.content_check import block_contact_details


def broken_check(prompt, completion, metadata):
    raise RuntimeError("model offline")


def make_core(tmp_path, **kw) -> FeedbackCore:
    return FeedbackCore(FeedbackConfig(store_path=str(tmp_path / "fb.sqlite3"), **kw))


def item(i, completion="a fine headline"):
    return {"id": i, "prompt": "for ana", "completion": completion, "metadata": {"topic": "sports"}}


def test_token_required_when_configured(tmp_path, monkeypatch):
    core = make_core(tmp_path, token="s3cret")
    with pytest.raises(Unauthenticated):
        core.authorize(None)
    with pytest.raises(Unauthenticated):
        core.authorize("wrong")
    core.authorize("s3cret")
    monkeypatch.setenv("RL_TEST_TOKEN", "from-env")
    env_core = make_core(tmp_path, token="env:RL_TEST_TOKEN")
    env_core.authorize("from-env")
    with pytest.raises(Unauthenticated):
        env_core.authorize("s3cret")


def test_open_gateway_needs_no_token(tmp_path):
    make_core(tmp_path).authorize(None)


def test_size_limit(tmp_path):
    core = make_core(tmp_path, max_request_bytes=2048)
    core.check_size(2048)
    with pytest.raises(PayloadTooLarge, match="max_request_bytes=2048") as err:
        core.check_size(2049)
    assert err.value.http_status == 413


@pytest.mark.parametrize("rater", ["ana@example.com", "", "Ana Smith", "x" * 65, "-leading-dash"])
def test_raters_must_be_pseudonyms(tmp_path, rater):
    core = make_core(tmp_path)
    core.publish([item("t1")], "pub")
    with pytest.raises(InvalidInput) as err:
        core.submit("t1", 1.0, rater)
    assert err.value.field == "rater"


def test_values_and_stars(tmp_path):
    core = make_core(tmp_path)
    core.publish([item("a"), item("b"), item("c")], "pub")
    with pytest.raises(InvalidInput, match="value"):
        core.submit("a", 3.0, "r-1")
    with pytest.raises(InvalidInput, match="stars"):
        core.submit("a", None, "r-1", stars=6)
    with pytest.raises(InvalidInput, match="value"):
        core.submit("a", "1", "r-1")
    assert core.submit("a", None, "r-1", stars=4).stored
    assert core.store.rating("a")["value"] == stars_to_value(4) == 0.75
    assert core.store.rating("a")["stars"] == 4
    with pytest.raises(NotFound):
        core.submit("zzz", 1.0, "r-1")


@pytest.mark.parametrize(
    "bad, field",
    [
        ([{"prompt": "p", "completion": "c"}], "items[0].id"),
        ([{"id": "x", "prompt": 3, "completion": "c"}], "items[0].prompt"),
        (
            [{"id": "x", "prompt": "p", "completion": "c", "metadata": {"k": 1}}],
            "items[0].metadata",
        ),
        ([{"id": "y" * 300, "prompt": "p", "completion": "c"}], "items[0].id"),
        ("not a list", "items"),
    ],
)
def test_publish_validation_names_the_field(tmp_path, bad, field):
    core = make_core(tmp_path)
    with pytest.raises(InvalidInput) as err:
        core.publish(bad, "pub")
    assert err.value.field == field
    assert core.store.counters()["pending"] == 0


def test_content_check_blocks_counts_and_hides(tmp_path):
    core = make_core(
        tmp_path,
        content_check="rewardloop.feedback.sources.content_check:block_contact_details",
        blocked_reward=-2.0,
    )
    res = core.publish(
        [item("ok"), item("mail", "write to bob@example.com"), item("web", "see www.x.org")], "pub"
    )
    assert res == {"published": 1, "blocked": 2, "blocked_ids": ["mail", "web"]}
    assert [it.id for it in core.pending()] == ["ok"]
    outs = {o.item_id: o for o in core.collect("pub", [])}
    assert outs["mail"].reward == -2.0 and "e-mail" in outs["mail"].reason
    assert core.stats()["blocked"] == 2 and core.stats()["blocked_by_check"] == 2


def test_a_failing_content_check_blocks(tmp_path):
    core = make_core(tmp_path, content_check=f"{__name__}:broken_check")
    res = core.publish([item("x")], "pub")
    assert res["blocked_ids"] == ["x"]
    assert core.stats()["check_errors"] == 1
    assert core.pending() == []


def test_builtin_check():
    assert (
        block_contact_details("", "call +1 555 123 4567 now", {})
        == "completion contains a phone number"
    )
    assert block_contact_details("", "Local team wins the cup", {}) is None
