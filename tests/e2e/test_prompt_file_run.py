"""Your own data from the CLI, end to end on Ray: the README's reviews example trains on a JSONL
prompt file with a function reward, and the same file with a reward service over HTTP. The run
evaluates with its own reward (calls counted) and the reward it optimizes rises."""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

import pytest
import torch
from aiohttp import web

from rewardloop.cli import main
from rewardloop.config import load_config
from rewardloop.feedback.sources.function_source import import_callable
from rewardloop.learner.accounting import read_audit

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "reviews" / "reviews.yaml"
sentiment = import_callable(f"{ROOT}/examples/reviews/reward.py:sentiment")
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from feedback_testutil import AioServer  # noqa: E402


def _overrides(model_cache: str, out: Path, *extra: str) -> list[str]:
    return [
        f"model.cache_dir={model_cache}",
        "learner.max_steps=80",
        "eval.samples_per_prompt=4",
        f"out={out}",
        *extra,
    ]


def _changed(base: str, checkpoint: Path) -> bool:
    from transformers import AutoModelForCausalLM

    a = AutoModelForCausalLM.from_pretrained(base, local_files_only=True).state_dict()
    b = AutoModelForCausalLM.from_pretrained(checkpoint, local_files_only=True).state_dict()
    return any(not torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_the_readme_example_learns_the_function_reward(
    model_cache, ray_local, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(ROOT)  # the example's paths are relative to the repository, as in README
    args = ["train", "--config", str(EXAMPLE), "--quiet"]
    for item in _overrides(model_cache, tmp_path):
        args += ["--set", item]
    assert main(args) == 0
    printed = capsys.readouterr().out
    summary = json.loads((tmp_path / "summary.json").read_text())
    ev = summary["eval"]
    assert summary["task"] == "prompts" and ev["metric"] == "reward"
    assert "readers" not in summary and "like rate" not in printed
    assert f"reward: {ev['start']:.3f} -> {ev['end']:.3f}" in printed
    assert set(ev["by_key"]) == {"audio", "garden", "kitchen"}
    assert ev["end"] >= ev["start"] + 0.25, ev
    assert ev["reward_calls"]["calls"] >= 2 and ev["reward_calls"]["errors"] == 0
    assert _changed(summary["base_model"], tmp_path / "checkpoint")
    evals = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(e["metric"] == "reward" for e in evals if e.get("event") == "eval")
    assert (tmp_path / "reward_curve.png").stat().st_size > 0


class _ReviewService:
    """The example's reward as an HTTP reward service (the documented contract), counting calls
    and recording the id of every item it scored (items[].id: the trajectory id in training)."""

    def __init__(self):
        self.calls = 0
        self.items = 0
        self.ids: collections.Counter[str] = collections.Counter()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls += 1
        self.items += len(body["items"])
        self.ids.update(i["id"] for i in body["items"])
        return web.json_response({"rewards": [sentiment(i["completion"]) for i in body["items"]]})


def _trained_ids(out: Path) -> collections.Counter[str]:
    """Trained ids as the learner's audit has them (an id trained twice counts twice)."""
    lines = read_audit(out / "audit" / "learner.jsonl")
    return collections.Counter(r["id"] for r in lines if r["outcome"] == "trained")


@pytest.mark.slow
def test_a_prompt_file_with_an_http_reward_service_learns_it(model_cache, ray_local, tmp_path):
    from rewardloop.cluster.run import train

    service = _ReviewService()
    with AioServer(service.handle) as server:
        cfg = load_config(
            None,
            _overrides(
                model_cache,
                tmp_path,
                f"prompts.path={ROOT / 'examples/reviews/reviews.jsonl'}",
                "prompts.eval_fraction=0.2",
                "reward.kind=http",
                f"reward.url={server.url}",
                "eval.target=0.9",
                "eval.every_steps=10",
            ),
        )
        summary = train(cfg, progress=False)
    ev = summary["eval"]
    assert ev["metric"] == "reward" and "audience" not in ev
    assert ev["end"] >= ev["start"] + 0.25, ev
    # training and evaluation both asked the service; evaluation's own calls are counted, once
    # each (summary.json sums the evaluations' own figures)
    evals = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evals = [e for e in evals if e.get("event") == "eval"]
    assert ev["reward_calls"]["items"] == sum(e["samples"] for e in evals)
    assert ev["reward_calls"]["items"] == sum(
        n for i, n in service.ids.items() if i.startswith("eval-")
    )
    assert 2 <= ev["reward_calls"]["calls"] < service.calls
    # every trained trajectory was scored by the service, and none was trained twice
    trained = _trained_ids(tmp_path)
    assert trained and max(trained.values()) == 1, trained.most_common(3)
    assert not set(trained) - set(service.ids), sorted(set(trained) - set(service.ids))[:5]
    assert ev["reward_calls"]["items"] + sum(trained.values()) <= service.items
    acc = summary["accounting"]
    assert acc["trained"] == len(trained) and acc["lost"] == 0, acc
    assert acc["outcome_conflicts"] == 0, acc
