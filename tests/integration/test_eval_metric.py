"""Evaluation measures what the run optimizes: the run's own reward (calls counted, failures
counted and survived), the task's audience beside it, and no Ray needed to evaluate."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rewardloop.config import ModelConfig, load_config
from rewardloop.feedback.evaluation import Evaluator
from rewardloop.modeling import default_model_dir
from rewardloop.tasks.newsfeed.readers import READER_BY_NAME

HERE = Path(__file__).resolve()
FAST = ["eval.samples_per_prompt=2", "rollout.max_new_tokens=12"]


def word_count(prompts, completions, metadata):
    """A reward of the test's own, named by file path: longer completions score higher."""
    return [float(len(c.split())) for c in completions]


@pytest.fixture
def evaluate(model_cache):
    torch.set_num_threads(1)

    def run(*overrides: str) -> dict:
        cfg = load_config(None, [f"model.cache_dir={model_cache}", *FAST, *overrides])
        evaluator = Evaluator(cfg)
        try:
            return evaluator()
        finally:
            evaluator.close()

    return run


def test_the_audience_is_the_metric_when_the_run_trains_on_it(evaluate):
    result = evaluate()
    assert result["metric"] == "like_rate" and result["noise_free"]
    assert set(result["by_key"]) == set(READER_BY_NAME)
    assert "reward_calls" not in result and "audience" not in result


def test_a_function_reward_is_the_metric_and_the_audience_is_reported_beside_it(evaluate):
    result = evaluate("reward.kind=function", f"reward.function={HERE}:word_count")
    assert result["metric"] == "reward" and not result["noise_free"]
    # word counts, not like rates: means well above 1 for 12-token headlines
    assert result["mean"] > 1.5 and set(result["by_key"]) == set(READER_BY_NAME)
    assert result["reward_calls"]["calls"] == 1
    assert result["reward_calls"]["items"] == result["samples"]
    audience = result["audience"]
    assert audience["metric"] == "like_rate" and audience["noise_free"]
    assert 0 <= audience["mean"] <= 1


def test_each_evaluation_reports_its_own_reward_calls_and_the_summary_sums_them(model_cache):
    from rewardloop import run_summary

    overrides = ["reward.kind=function", f"reward.function={HERE}:word_count"]
    cfg = load_config(None, [f"model.cache_dir={model_cache}", *FAST, *overrides])
    evaluator = Evaluator(cfg)
    try:
        evals = [evaluator() for _ in range(3)]
    finally:
        evaluator.close()
    assert [e["reward_calls"]["calls"] for e in evals] == [1, 1, 1]  # not a running total
    section = run_summary.eval_section(evals, [])
    assert section["reward_calls"]["calls"] == 3
    assert section["reward_calls"]["items"] == sum(e["samples"] for e in evals)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_failing_reward_service_is_counted_and_never_stops_evaluation(evaluate):
    result = evaluate(
        "reward.kind=http",
        f"reward.url=http://127.0.0.1:{_closed_port()}/score",
        "reward.retries=0",
        "reward.timeout_s=2",
    )
    assert result["metric"] == "reward"
    assert result["reward_calls"]["errors"] == 1 and result["by_key"] == {}
    assert set(result["audience"]["by_key"]) == set(READER_BY_NAME)  # the audience still scored


def test_delayed_human_reward_without_an_audience_reports_the_training_reward(
    model_cache, tmp_path
):
    from rewardloop import run_summary

    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        "".join(json.dumps({"text": f"Say hi to user {i}"}) + "\n" for i in range(8))
    )
    any_model = default_model_dir(ModelConfig(cache_dir=model_cache))  # any causal LM will do
    cfg = load_config(
        None,
        [f"prompts.path={prompts}", "reward.kind=human", "reward.url=127.0.0.1:1", *FAST]
        + [f"model.name_or_path={any_model}"],
    )
    assert cfg.task == "prompts"
    evaluator = Evaluator(cfg)
    first = evaluator()
    assert first["metric"] == "train_reward" and first["by_key"] == {}
    steps = [{"reward_mean": r, "reward_by_key": {"": r}} for r in [0.2] * 5 + [0.4] + [0.9] * 5]
    section = run_summary.eval_section([first, evaluator()], steps)
    assert section["metric"] == "train_reward"
    assert section["start"] == pytest.approx(0.2) and section["end"] == pytest.approx(0.9)
    assert section["by_key"][""] == {"start": pytest.approx(0.2), "end": pytest.approx(0.9)}


def test_rewardloop_eval_does_not_import_ray(model_cache):
    model = default_model_dir(ModelConfig(cache_dir=model_cache))
    code = (
        "import sys, json, io, contextlib\n"
        "from rewardloop.cli import main\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        f"    rc = main(['eval', '--model', {str(model)!r}, '--set', 'eval.samples_per_prompt=1'])\n"
        "assert rc == 0, rc\n"
        "assert json.loads(buf.getvalue())['metric'] == 'like_rate'\n"
        "print('ray' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False"
