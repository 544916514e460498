"""Reward sources without a network: function, combined (weights, delayed parts), factory, config."""

import math

import pytest

from rewardloop.config import RewardConfig, load_config
from rewardloop.errors import ConfigError, InvalidInput
from rewardloop.feedback.sources.base import RewardSource
from rewardloop.feedback.sources.combined import CombinedReward
from rewardloop.feedback.sources.content_check import ContentCheckedSource, block_contact_details
from rewardloop.feedback.sources.factory import make_reward_source
from rewardloop.feedback.sources.function_source import FunctionReward
from rewardloop.scoring import EXPIRED, Score, ScoreRequest


def length_reward(prompts, completions, metadata):
    return [len(c) / 10 for c in completions]


def wrong_length(prompts, completions, metadata):
    return [1.0]


def not_numbers(prompts, completions, metadata):
    return ["good" for _ in completions]


class Later(RewardSource):
    """A delayed source driven by the test: answers None, then whatever the test releases."""

    kind = "later"

    def __init__(self):
        self.ready: list[tuple[str, Score]] = []

    def score(self, items):
        return [None] * len(items)

    def poll(self, timeout_s=0.0):
        out, self.ready = self.ready, []
        return out


def reqs(*completions):
    return [ScoreRequest(id=f"t{i}", prompt="p", completion=c) for i, c in enumerate(completions)]


def test_function_by_import_path():
    src = FunctionReward(f"{__name__}:length_reward")
    scores = src.score(reqs("abc", "abcdefghij"))
    assert [s.reward for s in scores] == [0.3, 1.0]
    assert scores[0].parts[0].name == "function" and scores[0].source == "function"


@pytest.mark.parametrize(
    "fn, problem", [("wrong_length", "returned 1 rewards for 2 items"), ("not_numbers", "'good'")]
)
def test_function_bad_answers(fn, problem):
    with pytest.raises(InvalidInput, match=problem):
        FunctionReward(f"{__name__}:{fn}").score(reqs("a", "b"))


def test_function_bad_path():
    with pytest.raises(ConfigError, match="reward.function"):
        FunctionReward("no.such.module:fn")


def test_combined_immediate_parts_are_weighted_and_kept():
    a = FunctionReward(lambda p, c, m: [1.0] * len(c))
    b = FunctionReward(lambda p, c, m: [0.5] * len(c))
    (s,) = CombinedReward([("a", 0.25, a), ("b", 2.0, b)]).score(reqs("x"))
    assert s.reward == pytest.approx(0.25 * 1.0 + 2.0 * 0.5)
    assert [(p.name, p.value, p.weight) for p in s.parts] == [("a", 1.0, 0.25), ("b", 0.5, 2.0)]


def test_combined_waits_for_the_delayed_part():
    later = Later()
    combo = CombinedReward(
        [("fn", 0.5, FunctionReward(lambda p, c, m: [1.0] * len(c))), ("people", 0.5, later)]
    )
    assert combo.score(reqs("x", "y")) == [None, None]
    assert combo.poll() == []
    later.ready = [
        ("t1", Score(0.0, source="human", rater="r-9")),
        ("t0", Score(math.nan, source=EXPIRED)),
    ]
    done = dict(combo.poll())
    assert done["t1"].reward == pytest.approx(0.5) and done["t1"].rater == "r-9"
    assert [p.name for p in done["t1"].parts] == ["fn", "people"]
    assert done["t0"].source == EXPIRED  # a dropped part drops the item
    assert combo.partial == {}


def test_content_checked_source_never_forwards_blocked_items():
    seen = []

    def record(prompts, completions, metadata):
        seen.extend(completions)
        return [1.0] * len(completions)

    src = ContentCheckedSource(FunctionReward(record), block_contact_details, blocked_reward=-1.0)
    scores = src.score(reqs("fine", "mail x@y.org", "also fine"))
    assert seen == ["fine", "also fine"]
    assert [s.reward for s in scores] == [1.0, -1.0, 1.0] and scores[1].source == "blocked"
    assert src.gate.blocked == 1


def test_factory_builds_each_kind_and_combinations():
    cfg = load_config(
        overrides=[
            f"reward.sources=[{{kind: function, function: '{__name__}:length_reward', weight: 2, name: len}},"
            " {kind: persona, weight: 1}]"
        ]
    )
    made = []
    src = make_reward_source(
        cfg, seed=3, persona_factory=lambda c, s: made.append(s) or FunctionReward(wrong_length)
    )
    assert isinstance(src, CombinedReward) and made == [3]
    assert [name for name, _, _ in src.parts] == ["len", "persona"]
    fn = make_reward_source(RewardConfig(kind="function", function=f"{__name__}:length_reward"))
    assert isinstance(fn, FunctionReward)


def test_factory_wraps_remote_sources_with_the_content_check():
    cfg = load_config(
        overrides=[
            "reward.kind=http",
            "reward.url=http://127.0.0.1:9",
            "feedback.content_check=rewardloop.feedback.sources.content_check:block_contact_details",
        ]
    )
    src = make_reward_source(cfg)
    try:
        assert isinstance(src, ContentCheckedSource)
        (s,) = src.score(reqs("see https://spam.example"))  # blocked before any network call
        assert s.source == "blocked"
    finally:
        src.close()


@pytest.mark.parametrize(
    "override, key",
    [
        ("reward.sources=[{kind: nope}]", "reward.sources[0].kind"),
        ("reward.sources=[{kind: http}]", "reward.sources[0].url"),
        ("reward.sources=[{kind: persona, weight: heavy}]", "reward.sources[0].weight"),
        ("reward.sources=[{kind: persona}, {kind: persona}]", "reward.sources[1].name"),
        ("reward.sources=[{kind: persona, colour: red}]", "reward.sources[0].colour"),
        ("reward.kind=human", "reward.url"),
        ("feedback.expiry_outcome=later", "feedback.expiry_outcome"),
        ("feedback.tls_key=k.pem", "feedback.tls_cert"),
        ("feedback.max_request_bytes=10", "feedback.max_request_bytes"),
        ("feedback.content_check=nocolon", "feedback.content_check"),
    ],
)
def test_config_errors_name_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    assert str(err.value).startswith(key + ":")
