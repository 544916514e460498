"""The help-desk corpus, users and prompts: the right steps read as helpful, filler and another
topic's steps do not, garbage is garbage, and evaluation prompts are never trained on."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from rewardloop.config import ModelConfig, RewardConfig, load_config
from rewardloop.errors import ConfigError
from rewardloop.feedback.sim.helpdesk_users import HelpdeskUser, HelpdeskUserReward
from rewardloop.scoring import ScoreRequest
from rewardloop.tasks.helpdesk.corpus import (
    CATEGORIES,
    QUESTIONS,
    STEPS,
    check_lexicons,
    generate_answers,
    helpful_probability,
    judge_answer,
    question_category,
)
from rewardloop.tasks.helpdesk.prompts import (
    eval_prompts,
    prompt_source,
    question_of,
    train_prompts,
)

HELPFUL = "Sure, first open the login page, then click forgot password."
PROMPT = "Customer: Hi, I forgot my password.\nAgent:"


@pytest.fixture(scope="module")
def answers():
    return generate_answers(3000, seed=0)


def test_lexicons_are_disjoint_and_every_question_names_its_category():
    assert check_lexicons() == []
    for category, questions in QUESTIONS.items():
        for q in questions:
            assert question_category(q) == category, q
    assert question_category("What is the meaning of life?") is None


def test_generated_answers_read_as_the_kind_they_were_made_as(answers):
    kinds = Counter(a.kind for a in answers)
    assert set(kinds) == {"helpful", "off_topic", "generic"}
    wrong = [
        (a.category, a.kind, a.text)
        for a in answers
        if judge_answer(a.category, a.text).kind != a.kind
    ]
    assert wrong == []
    assert generate_answers(40, seed=3) == generate_answers(40, seed=3)
    assert generate_answers(40, seed=3) != generate_answers(40, seed=4)


def test_the_same_steps_help_one_question_and_not_another():
    assert judge_answer("password", HELPFUL).kind == "helpful"
    for other in CATEGORIES:
        if other != "password":
            assert judge_answer(other, HELPFUL).kind == "off_topic"


@pytest.mark.parametrize(
    "text, kind",
    [
        ("", "malformed"),
        ("asdf qwer zxcv", "malformed"),  # words the users do not know
        ("Sure,", "malformed"),  # too short
        ("<b>restart the app</b> and reconnect to wifi", "malformed"),  # markup
        ("restart the app, restart the app, restart the app", "malformed"),  # babbling
        ("Please contact support for more help.", "generic"),
        ("Sorry for the trouble, please try again later.", "generic"),
        ("Sure, click forgot password.", "partial"),  # one right step
        ("Click forgot password, then restart the app.", "off_topic"),  # half of it wrong
        ("Thanks for reaching out. Click forgot password and sign back in.", "helpful"),
    ],
)
def test_judge(text, kind):
    assert judge_answer("password", text).kind == kind


def test_helpful_probability_by_kind():
    assert helpful_probability("password", HELPFUL) == 0.9
    assert helpful_probability("password", "Sure, click forgot password.") == pytest.approx(0.5)
    assert helpful_probability("password", "Please see our help center.") == 0.1
    assert helpful_probability("billing", HELPFUL) == 0.1
    assert helpful_probability("password", "qwerty") == 0.0
    with pytest.raises(ValueError, match="unknown category"):
        judge_answer("weather", HELPFUL)


def test_prompts_are_held_out_and_keyed_by_category():
    train, held_out = train_prompts(), eval_prompts()
    assert not {p.text for p in train} & {p.text for p in held_out}
    assert {p.key for p in train} == {p.key for p in held_out} == set(CATEGORIES)
    assert len(held_out) < len(train)
    for p in train + held_out:
        assert question_category(question_of(p.text)) == p.key, p.text
    source = prompt_source()
    assert source.train == train and source.evaluation == held_out


def test_user_reads_the_category_from_the_prompt():
    user = HelpdeskUser(helpful_prob=1.0, unhelpful_prob=0.0)
    assert user.probability(PROMPT, HELPFUL) == 1.0
    assert user.probability("Customer: My card payment was declined.\nAgent:", HELPFUL) == 0.0
    assert user.probability("Customer: Tell me a joke.\nAgent:", HELPFUL) == 0.0
    assert user.probability("anything", HELPFUL, category="password") == 1.0


def test_reward_draws_bernoulli_answers_around_the_expectation():
    reward = HelpdeskUserReward(RewardConfig(like_prob=0.8, dislike_prob=0.1), seed=0)
    items = [ScoreRequest(f"i{k}", PROMPT, HELPFUL, "password") for k in range(2000)]
    assert reward.expected(items[:1]) == [0.8]
    values = [s.reward for s in reward.score(items)]
    assert set(values) == {0.0, 1.0}
    assert 0.75 < sum(values) / len(values) < 0.85


def test_tasks_pick_helpdesk_users_for_persona_and_evaluation():
    from rewardloop.feedback.sources.for_task import audience_source, train_reward_source

    cfg = load_config(None, ["task=helpdesk"])
    assert isinstance(train_reward_source(cfg, seed=0), HelpdeskUserReward)
    assert isinstance(audience_source(cfg, seed=0), HelpdeskUserReward)
    human = load_config(None, ["task=helpdesk", "reward.kind=human", "feedback.autostart=true"])
    assert isinstance(audience_source(human, seed=0), HelpdeskUserReward)


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["reward.kind=human"], "reward.url"),
        (["task=helpdesk", "feedback.simulated_raters=2"], "feedback.simulated_raters"),
        (["feedback.autostart=true", "feedback.simulated_raters=2"], "feedback.simulated_raters"),
        (["feedback.rating_delay_s=-1"], "feedback.rating_delay_s"),
        (["rollout.max_pending_groups=-1"], "rollout.max_pending_groups"),
    ],
)
def test_config_errors_name_the_key(overrides, key):
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert str(err.value).startswith(key + ":")


def test_example_config_loads():
    cfg = load_config("examples/helpdesk.yaml")
    assert cfg.task == "helpdesk" and cfg.reward.kind == "human" and cfg.feedback.autostart
    assert cfg.feedback.simulated_raters > 0 and cfg.rollout.max_pending_groups > 0


def test_default_model_builds_once_and_loads(tmp_path):
    """Tiny settings: a loadable HF directory with the build report, through default_model_dir."""
    from rewardloop.modeling import default_model_dir, load_policy

    torch.set_num_threads(1)
    cfg = ModelConfig(
        cache_dir=str(tmp_path), pretrain_seconds=2.0, vocab_size=400, n_layer=1, n_embd=32
    )
    path = default_model_dir(cfg, "helpdesk")
    assert path.name.startswith("helpdesk-")
    info = json.loads((path / "build_info.json").read_text())
    assert set(info["helpful_rate"]) == set(CATEGORIES)
    assert sum(info["kinds"].values()) == pytest.approx(1.0, abs=1e-3)
    assert default_model_dir(cfg, "helpdesk") == path  # cached: no second build
    model, tokenizer, _ = load_policy(cfg, "helpdesk")
    ids = tokenizer(" " + STEPS["password"][0], add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == " " + STEPS["password"][0]  # byte-level: round-trips
    assert model.config.vocab_size == len(tokenizer)
