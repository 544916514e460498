"""The driver of `rewardloop train`: start Ray, the learner and the workers, watch, evaluate,
and leave metrics.jsonl, reward_curve.png, checkpoint/ and summary.json in the run directory."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import ray
import torch
from tqdm import tqdm

from rewardloop.config import RunConfig, to_dict
from rewardloop.errors import RewardLoopError
from rewardloop.modeling import load_policy
from rewardloop.run_outputs import MetricsLog, plot_reward_curve, write_json

from . import tasks
from .actors import LearnerActor
from .feedback_side import start_feedback
from .placement import connect, learner_options
from .pool import RolloutPool, idle_workers_hint

log = logging.getLogger(__name__)
POLL_S = 0.5


class Evaluator:
    """Held-out evaluation in the driver process, on whatever weights it is given."""

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.model, self.tokenizer, self.model_path = load_policy(cfg.model, cfg.task)
        self.prompts = tasks.prompt_source(cfg).evaluation
        self.reward = tasks.eval_reward_source(cfg, seed=cfg.seed + 99991)

    def __call__(self, model=None) -> dict:
        from rewardloop.feedback.evaluation import evaluate_policy

        return evaluate_policy(
            model or self.model,
            self.tokenizer,
            self.prompts,
            self.reward,
            samples_per_prompt=self.cfg.eval.samples_per_prompt,
            max_new_tokens=self.cfg.rollout.max_new_tokens,
            temperature=self.cfg.rollout.temperature,
            seed=self.cfg.seed + 7,
        )

    def load(self, state: dict) -> None:
        self.model.load_state_dict(state)


def train(cfg: RunConfig, progress: bool = True) -> dict:
    """Run the whole loop; returns the summary (also written to <out>/summary.json)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    evaluator = Evaluator(cfg)  # builds the default model once (cached) before Ray starts
    # The driver's evaluations share the CPUs with the actors: more than one OpenMP thread here
    # spins against them (measured: many times slower steps on 2 cores).
    torch.set_num_threads(1)
    cfg = _with_model_path(cfg, evaluator.model_path)
    hint = idle_workers_hint(cfg)
    if hint:
        log.warning(hint)
    t_ray_start = time.perf_counter()
    connect(cfg)
    # feedback.autostart: a gateway (and simulated raters) for this run; reward.url points at it
    feedback = start_feedback(cfg)
    cfg = feedback.cfg
    t_ray = time.perf_counter()
    learner = LearnerActor.options(**learner_options(cfg)).remote(cfg)
    pool = RolloutPool(cfg, learner)
    pool.launch(cfg.rollout.num_workers)  # workers load their model while the learner loads
    endpoints = ray.get(learner.start.remote(), timeout=600)
    pool.start(endpoints)
    write_json(out / "config.json", to_dict(cfg))
    t_train = time.perf_counter()
    setup = {
        "before_ray_s": round(t_ray_start - t_start, 2),
        "ray_init_s": round(t_ray - t_ray_start, 2),
        "learner_ready_s": round(t_train - t_ray, 2),
        "total_s": round(t_train - t_start, 2),
    }
    ray.get(learner.start_training.remote(cfg.learner.max_steps), timeout=60)
    evals = [{"step": 0, **evaluator()}]  # the base model, while the first steps train
    metrics_log = MetricsLog(out / "metrics.jsonl")
    metrics_log.write({"event": "eval", **evals[0]})
    steps: list[dict] = []
    bar = tqdm(
        total=cfg.learner.max_steps,
        desc="train",
        unit="step",
        disable=not progress,
        dynamic_ncols=True,
    )
    error = ""
    target_version = None  # the evaluated version that reached eval.target: the one to keep
    target_weights = None
    try:
        while True:
            new = ray.get(learner.metrics_since.remote(len(steps)), timeout=60)
            for record in new:
                metrics_log.write(record)
            steps.extend(new)
            bar.update(len(new))
            if new:
                bar.set_postfix(_postfix(new[-1], evals[-1]), refresh=False)
            if _due_for_eval(cfg, steps, evals):
                evals.append(_evaluate_latest(evaluator, learner, len(steps)))
                metrics_log.write({"event": "eval", **evals[-1]})
                if cfg.eval.target and min(evals[-1]["by_key"].values()) >= cfg.eval.target:
                    log.info(
                        "every key reached eval.target=%.2f at step %d", cfg.eval.target, len(steps)
                    )
                    target_version = evals[-1]["version"]
                    # the learner trains on while we evaluate and stop: keep these exact weights
                    target_weights = {k: v.clone() for k, v in evaluator.model.state_dict().items()}
                    break
            status = ray.get(learner.status.remote(), timeout=60)
            if status["done"] and len(steps) >= status["steps"]:
                error = status["error"]
                break
            failed = pool.failed()
            if failed:
                error = "rollout worker failed: " + "; ".join(failed)
                break
            time.sleep(POLL_S)
    finally:
        bar.close()
        train_seconds = time.perf_counter() - t_train
        worker_stats = pool.shutdown()
        ray.get(learner.stop.remote(), timeout=60)
        feedback_stats = feedback.stop()
    checkpoint = out / "checkpoint"
    meta = {"steps": len(steps), "config": to_dict(cfg)}
    ray.get(learner.save.remote(str(checkpoint), meta, target_version, target_weights), timeout=300)
    final = _evaluate_checkpoint(evaluator, checkpoint, len(steps))
    evals.append(final)
    metrics_log.write({"event": "eval", **final})
    metrics_log.close()
    plot_reward_curve(steps, evals, out / "reward_curve.png")
    summary = _summary(
        cfg, steps, evals, worker_stats, time.perf_counter() - t_start, train_seconds, checkpoint
    )
    summary["setup"] = setup  # seconds before training: Ray start-up, the learner loading
    summary["error"] = error
    summary["learner_device"] = endpoints["device"]
    if feedback_stats:
        summary["feedback"] = feedback_stats
    write_json(out / "summary.json", summary)
    if error:
        raise RewardLoopError(f"training stopped early: {error} (see {out}/metrics.jsonl)")
    return summary


def _with_model_path(cfg: RunConfig, path: str) -> RunConfig:
    from rewardloop.config import replace

    return replace(cfg, model={"name_or_path": path})


def _due_for_eval(cfg: RunConfig, steps: list[dict], evals: list[dict]) -> bool:
    every = cfg.eval.every_steps
    return (
        bool(every)
        and len(steps) - evals[-1]["step"] >= every
        and len(steps) < cfg.learner.max_steps
    )


def _evaluate_latest(evaluator: Evaluator, learner, step: int) -> dict:
    latest = ray.get(learner.latest_weights.remote(-1), timeout=60)
    version, (ref,) = latest
    evaluator.load(ray.get(ref, timeout=60))
    return {"step": step, "version": version, **evaluator()}


def _evaluate_checkpoint(evaluator: Evaluator, checkpoint: Path, step: int) -> dict:
    """Final evaluation loads the checkpoint with plain transformers, as a user would."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(checkpoint, local_files_only=True)
    return {"step": step, "checkpoint": str(checkpoint), **evaluator(model)}


def _postfix(step: dict, last_eval: dict) -> dict:
    return {
        "reward": f"{step.get('reward_mean', 0):.2f}",
        "like": "/".join(f"{v:.2f}" for v in last_eval["by_key"].values()),
        "lag": f"{step.get('lag_mean', 0):.2f}",
        "traj/s": f"{step.get('trajectories_per_s', 0):.0f}",
    }


def _summary(cfg, steps, evals, worker_stats, seconds, train_seconds, checkpoint) -> dict:
    start, end = evals[0], evals[-1]
    lags = [s["lag_mean"] for s in steps]
    trajectories = steps[-1]["trajectories"] if steps else 0
    return {
        "steps": len(steps),
        "seconds": round(seconds, 2),
        "train_seconds": round(train_seconds, 2),
        "trajectories": trajectories,
        "trajectories_per_s": round(trajectories / max(train_seconds, 1e-9), 2),
        "policy_lag_mean": sum(lags) / len(lags) if lags else 0.0,
        "dropped_stale": steps[-1]["dropped_stale"] if steps else 0,
        "learner_wait_fraction": steps[-1]["wait_fraction"] if steps else 0.0,
        "steps_skipped": sum(int(s["skipped"]) for s in steps),
        "algorithm": cfg.learner.algorithm,
        "max_staleness": cfg.learner.max_staleness,
        "num_workers": cfg.rollout.num_workers,
        "base_model": cfg.model.name_or_path,
        "final_model": str(checkpoint),
        "rate_mean_start": start["mean"],
        "rate_mean_end": end["mean"],
        "readers": {
            key: {"like_rate_start": start["by_key"][key], "like_rate_end": end["by_key"].get(key)}
            for key in start["by_key"]
        },
        "rollout_workers": worker_stats,
    }
