"""The driver on a real local Ray (2 CPUs): one rollout actor, the learner actor, real gRPC in
between, weights through the object store; checks every output a run promises."""

import json

import pytest
import torch

from rewardloop.config import load_config


@pytest.fixture(scope="module")
def run(model_cache, ray_local, tmp_path_factory):
    from rewardloop.cluster.run import train

    out = tmp_path_factory.mktemp("ray-run")
    cfg = load_config(
        None,
        [
            f"model.cache_dir={model_cache}",
            "learner.max_steps=6",
            "eval.every_steps=3",
            "eval.samples_per_prompt=4",
            f"out={out}",
            "rollout.num_workers=1",
        ],
    )
    summary = train(cfg, progress=False)
    return cfg, out, summary


def test_summary_has_the_promised_fields(run):
    cfg, out, summary = run
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["steps"] == summary["steps"] == 6
    for key in (
        "seconds",
        "trajectories",
        "policy_lag_mean",
        "base_model",
        "final_model",
        "readers",
    ):
        assert key in on_disk
    assert on_disk["trajectories"] == 6 * cfg.learner.groups_per_step * cfg.rollout.group_size
    assert 0 <= on_disk["policy_lag_mean"] <= cfg.learner.max_staleness
    assert set(on_disk["readers"]) == {"alice", "bob", "carol"}
    for rates in on_disk["readers"].values():
        assert 0 <= rates["like_rate_start"] <= 1 and 0 <= rates["like_rate_end"] <= 1
    assert on_disk["error"] == ""


def test_metrics_log_has_a_line_per_step_and_evaluations(run):
    _, out, _ = run
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in lines if "event" not in r]
    evals = [r for r in lines if r.get("event") == "eval"]
    assert [r["step"] for r in steps] == list(range(1, 7))
    assert [r["version"] for r in steps] == [float(v) for v in range(1, 7)]
    # the base model first, the saved checkpoint last (periodic ones in between when the
    # driver polls before the learner has finished: timing-dependent, so not required)
    assert len(evals) >= 2 and evals[0]["step"] == 0
    assert evals[-1]["step"] == 6 and evals[-1]["checkpoint"].endswith("checkpoint")
    assert all("reward_by_key" in r and "lag_mean" in r for r in steps)


def test_checkpoint_loads_with_plain_transformers_and_differs_from_base(run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, out, summary = run
    final = AutoModelForCausalLM.from_pretrained(out / "checkpoint", local_files_only=True)
    base = AutoModelForCausalLM.from_pretrained(summary["base_model"], local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(out / "checkpoint", local_files_only=True)
    assert tokenizer.eos_token_id is not None
    changed = [n for n, p in final.state_dict().items() if not torch.equal(p, base.state_dict()[n])]
    assert changed, "training did not change any parameter"
    assert (out / "reward_curve.png").stat().st_size > 10_000
