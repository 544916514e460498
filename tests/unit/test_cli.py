"""The `rewardloop` command: bad config stops at once with the key named; subcommands exist."""

from pathlib import Path

import pytest

from rewardloop.cli import build_parser, main


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
