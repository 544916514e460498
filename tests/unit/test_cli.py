"""The `rewardloop` command: bad config stops at once with the key named; subcommands exist."""

from pathlib import Path

import pytest

from rewardloop.cli import build_parser, main
from rewardloop.errors import InvalidInput
from rewardloop.feedback.gateway.records import Item
from rewardloop.feedback.gateway.store import FeedbackStore


def test_bad_config_value_stops_with_the_key_and_fix(capsys):
    assert main(["train", "--set", "learner.lr=-1"]) == 2
    err = capsys.readouterr().err
    assert "learner.lr" in err and "--set learner.lr=" in err


def test_unknown_key_lists_known_keys(capsys):
    assert main(["train", "--set", "rollout.workers=2"]) == 2
    err = capsys.readouterr().err
    assert "rollout.workers: unknown key" in err and "num_workers" in err


def test_missing_config_file(capsys, tmp_path):
    assert main(["train", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--help"],
        ["eval", "--help"],
        ["feedback", "serve", "--help"],
        ["feedback", "forget", "--help"],
        ["bench", "--help"],
        ["model", "build", "--help"],
    ],
)
def test_subcommands_have_help(argv, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 0
    assert "usage: rewardloop" in capsys.readouterr().out


def test_model_build_prints_the_cached_default_model_dir(model_cache, capsys):
    from transformers import AutoConfig

    assert main(["model", "build", "--set", f"model.cache_dir={model_cache}"]) == 0
    path = capsys.readouterr().out.strip()
    assert Path(path).parent == Path(model_cache).expanduser()
    assert AutoConfig.from_pretrained(path).n_layer == 2


def test_model_build_refuses_a_model_it_cannot_build(capsys):
    assert main(["model", "build", "--set", "model.name_or_path=/some/dir"]) == 2
    assert "model.name_or_path" in capsys.readouterr().err


def test_feedback_forget_exits_0_prints_the_count_and_deletes_the_ratings(tmp_path, capsys):
    path = tmp_path / "fb.sqlite3"
    store = FeedbackStore(path, expiry_s=3600)
    store.publish([Item(i, f"prompt {i}", f"completion {i}") for i in ("a", "b", "c")], "pub")
    store.submit("a", 1.0, rater="r-gone")
    store.submit("b", 0.0, rater="r-gone")
    store.submit("c", 1.0, rater="r-stays")
    store.close()

    assert main(["feedback", "forget", "r-gone", "--store", str(path)]) == 0
    assert "forgot rater r-gone: 2 rating(s) deleted" in capsys.readouterr().out

    store = FeedbackStore(path, expiry_s=3600)
    try:
        assert store.ratings_by("r-gone") == 0 and store.ratings_by("r-stays") == 1
        assert store.rating("a") is None and store.rating("c")["rater"] == "r-stays"
        with pytest.raises(InvalidInput, match="forgotten"):
            store.submit("a", 1.0, rater="r-gone")  # their later ratings are refused
    finally:
        store.close()
    # Nothing left to delete is still a success, and says so.
    assert main(["feedback", "forget", "r-gone", "--store", str(path)]) == 0
    assert "0 rating(s) deleted" in capsys.readouterr().out


def test_feedback_serve_and_forget_share_the_store_and_config_options():
    parser = build_parser()
    serve = parser.parse_args(
        ["feedback", "serve", "--store", "s.db", "--http-port", "0", "--set", "feedback.expiry_s=5"]
    )
    forget = parser.parse_args(
        ["feedback", "forget", "r-1", "--store", "s.db", "--set", "feedback.expiry_s=5"]
    )
    assert serve.store == forget.store == "s.db"
    assert serve.overrides == forget.overrides == ["feedback.expiry_s=5"]
    assert serve.http_port == 0 and serve.func is forget.func
