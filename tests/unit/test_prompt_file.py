"""The prompt-file task: a JSONL file read as the config says, split the same way every time,
bad files refused with the line and the field named; tasks come from one registry."""

from __future__ import annotations

import json

import pytest

from rewardloop.config import load_config
from rewardloop.errors import ConfigError
from rewardloop.tasks import get_task, task_names
from rewardloop.tasks.prompt_file import held_out, split_rows
from rewardloop.tasks.prompt_file_model import pairs


def _write(path, rows) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def _cfg(*overrides):
    return load_config(None, ["reward.kind=function", "reward.function=m:f", *overrides])


def test_prompts_path_alone_selects_the_prompt_file_task(tmp_path):
    path = _write(tmp_path / "p.jsonl", [{"text": "hello world"}])
    assert _cfg(f"prompts.path={path}").task == "prompts"
    assert load_config().task == "newsfeed"
    with pytest.raises(ConfigError, match=r"^prompts\.path: .*task=helpdesk"):
        _cfg(f"prompts.path={path}", "task=helpdesk")
    with pytest.raises(ConfigError, match=r"^prompts\.path: task=prompts needs"):
        _cfg("task=prompts")


def test_persona_needs_a_task_with_an_audience(tmp_path):
    path = _write(tmp_path / "p.jsonl", [{"text": "hello world"}])
    with pytest.raises(ConfigError, match=r"^reward\.kind: persona .* task=prompts has none"):
        load_config(None, [f"prompts.path={path}"])
    with pytest.raises(ConfigError, match=r"^feedback\.simulated_raters: task=newsfeed"):
        load_config(None, ["feedback.autostart=true", "feedback.simulated_raters=2"])


def test_config_validation_takes_the_registrys_names():
    assert set(task_names()) == {"newsfeed", "helpdesk", "prompts"}
    for name in task_names():
        task = get_task(name)
        assert task.name == name and callable(task.prompts) and callable(task.default_model)
    with pytest.raises(
        ConfigError, match=r"^task: use one of newsfeed, helpdesk, prompts, got 'chess'"
    ):
        load_config(None, ["task=chess"])


def test_fields_keys_completions_and_a_split_column(tmp_path):
    path = _write(
        tmp_path / "p.jsonl",
        [
            {"q": "first question", "cat": "a", "answers": ["yes", "no"]},
            {"q": "second question", "cat": "b", "answers": "maybe", "part": "eval"},
            "",
            {"q": "third question", "cat": "a"},
        ],
    )
    cfg = _cfg(
        f"prompts.path={path}",
        "prompts.field=q",
        "prompts.key_field=cat",
        "prompts.completion_field=answers",
        "prompts.split_field=part",
    )
    train, evaluation = split_rows(cfg.prompts)
    assert [r.prompt.text for r in train] == ["first question", "third question"]
    assert [r.prompt.key for r in train] == ["a", "a"]
    assert [r.prompt.text for r in evaluation] == ["second question"]
    assert train[0].completions == ("yes", "no") and evaluation[0].completions == ("maybe",)
    source = get_task("prompts").prompts(cfg)
    assert [p.text for p in source.evaluation] == ["second question"]
    # pre-training pairs: every example completion, else the prompt's own words continued
    assert pairs(train) == [
        ("first question", " yes"),
        ("first question", " no"),
        ("third", " question"),
    ]


def test_eval_fraction_holds_out_the_same_prompts_everywhere(tmp_path):
    rows = [{"text": f"prompt number {i}"} for i in range(400)]
    path = _write(tmp_path / "p.jsonl", rows)
    train, evaluation = split_rows(
        _cfg(f"prompts.path={path}", "prompts.eval_fraction=0.25").prompts
    )
    assert len(train) + len(evaluation) == 400
    assert 60 <= len(evaluation) <= 140
    assert {r.prompt.text for r in evaluation} == {
        r["text"] for r in rows if held_out(r["text"], 0.25)
    }
    assert not {r.prompt.text for r in train} & {r.prompt.text for r in evaluation}


def test_eval_path_datasets_dir_and_max_prompts(tmp_path):
    data = tmp_path / "datasets"
    data.mkdir()
    _write(data / "train.jsonl", [{"text": f"train {i}"} for i in range(5)])
    _write(data / "held.jsonl", [{"text": "held out one"}])
    cfg = _cfg(
        "prompts.path=train.jsonl",
        "prompts.eval_path=held.jsonl",
        f"prompts.datasets_dir={data}",
        "prompts.max_prompts=3",
    )
    train, evaluation = split_rows(cfg.prompts)
    assert [r.prompt.text for r in train] == ["train 0", "train 1", "train 2"]
    assert [r.prompt.text for r in evaluation] == ["held out one"]


@pytest.mark.parametrize(
    "line, match",
    [
        ("{not json", r"^prompts\.path: .*:2: not JSON"),
        ("[1, 2]", r"^prompts\.path: .*:2: each line must be a JSON object"),
        (
            json.dumps({"prompt": "x"}),
            r"^prompts\.field: .*:2 has no non-empty string field 'text' \(its fields: prompt\)",
        ),
        (json.dumps({"text": "x", "completion": 3}), r"^prompts\.completion_field: .*:2"),
    ],
)
def test_a_bad_line_is_refused_naming_the_line_and_the_field(tmp_path, line, match):
    path = _write(tmp_path / "p.jsonl", [{"text": "fine"}, line])
    with pytest.raises(ConfigError, match=match):
        split_rows(_cfg(f"prompts.path={path}").prompts)


def test_a_missing_file_names_where_it_looked(tmp_path):
    with pytest.raises(ConfigError, match=r"^prompts\.path: no file 'nope\.jsonl' \(looked at"):
        split_rows(_cfg("prompts.path=nope.jsonl").prompts)


def test_config_errors_quote_the_bad_value():
    with pytest.raises(ConfigError, match=r"^learner\.lr: must be in \(0, 1\), got -1\.0"):
        load_config(None, ["learner.lr=-1"])
    with pytest.raises(ConfigError, match=r"^reward\.dislike_prob: .*got 0\.95"):
        load_config(None, ["reward.dislike_prob=0.95"])
    with pytest.raises(
        ConfigError, match=r"^rollout\.weight_sync: use one of object_store, grpc, got 'x'"
    ):
        load_config(None, ["rollout.weight_sync=x"])
