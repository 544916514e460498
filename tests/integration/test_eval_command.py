"""`rewardloop eval --model DIR` prints the held-out like rate of every reader as JSON, for the
base model and for a checkpoint the learner wrote (a HF directory plus trainer state)."""

import json

import pytest
import torch

from rewardloop.cli import main
from rewardloop.config import ModelConfig, load_config
from rewardloop.modeling import default_model_dir
from rewardloop.tasks.newsfeed.readers import READER_BY_NAME

FAST = ["--set", "eval.samples_per_prompt=4", "--set", "rollout.max_new_tokens=16"]


def _eval(capsys, model_dir, *extra) -> dict:
    assert main(["eval", "--model", str(model_dir), *FAST, *extra]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def base_dir(model_cache):
    return default_model_dir(ModelConfig(cache_dir=model_cache))


def test_eval_base_model_prints_every_readers_rate(capsys, base_dir):
    torch.set_num_threads(1)
    result = _eval(capsys, base_dir)
    assert result["model"] == str(base_dir)
    assert set(result["by_key"]) == set(READER_BY_NAME)
    assert all(0.0 <= v <= 1.0 for v in result["by_key"].values())
    assert result["mean"] == pytest.approx(sum(result["by_key"].values()) / len(result["by_key"]))
    assert result["noise_free"] is True
    assert result["samples"] > 0
    assert _eval(capsys, base_dir)["by_key"] == result["by_key"]  # seeded: a repeat agrees


def test_eval_learner_checkpoint(capsys, base_dir, tmp_path):
    """A checkpoint saved by the learner loads and scores like any model directory; after one
    optimizer step its weights (and so, in general, its rates) differ from the base model."""
    from rewardloop.learner.service import LearnerService
    from rewardloop.modeling import load_policy

    torch.set_num_threads(1)
    cfg = load_config(None, [f"model.name_or_path={base_dir}"])
    model, tokenizer, _ = load_policy(cfg.model)
    service = LearnerService(cfg, model, tokenizer)
    with torch.no_grad():  # stand-in for training: any change of weights must show in the file
        model.get_input_embeddings().weight.mul_(0.5)
    checkpoint = service.save(str(tmp_path / "checkpoint"), meta={"steps": 0})
    base = _eval(capsys, base_dir)
    result = _eval(capsys, checkpoint)
    assert result["model"] == checkpoint
    assert set(result["by_key"]) == set(READER_BY_NAME)
    assert all(0.0 <= v <= 1.0 for v in result["by_key"].values())
    assert result["by_key"] != base["by_key"]  # the changed weights were the ones scored
    assert (tmp_path / "checkpoint" / "trainer_state.pt").exists()


def test_eval_missing_model_is_a_config_error(capsys, tmp_path):
    assert main(["eval", "--model", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "model.name_or_path" in err
