"""`Run`: one training run, the driver of `rewardloop train`, in small steps.

    summary = Run(cfg).execute()          # or step by step:
    run = Run(cfg)
    run.prepare(); run.connect(); run.launch(); run.watch(); run.stop(); run.save()
    # (execute() runs prepare() on a thread while connect() starts Ray: cluster/startup.py)
    summary = run.finish(); run.close()

The run owns what it started and nothing else: it connects to `cluster.address` (or
`RAY_ADDRESS`, or a Ray this process already initialized) or starts an embedded local Ray, and
`close()` shuts Ray down only when this run initialized it (leaving a cluster it attached to
running; its own actors are killed either way). The run directory gets config.json,
metrics.jsonl, reward_curve.png, checkpoint/ and summary.json.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import ray
import torch
from tqdm import tqdm

from rewardloop import run_summary
from rewardloop.auth import resolve_token
from rewardloop.config import RunConfig, replace, to_dict
from rewardloop.errors import RewardLoopError
from rewardloop.feedback.evaluation import Evaluator
from rewardloop.metrics import record_endpoints
from rewardloop.run_outputs import MetricsLog, plot_reward_curve, write_json
from rewardloop.tasks import get_task

from . import accounting_report
from .actors import LearnerActor
from .feedback_side import FeedbackSide, start_feedback
from .paths import absolute_paths
from .placement import Placement, connect, reserve
from .pool import RolloutPool, idle_workers_hint
from .resume import LearnerCalls, prepare_dir, restore_sigterm, sigterm_received, stop_on_sigterm
from .run_steps import RunSteps, from_metrics, keep_for, reward_points
from .scaling import Scaler
from .startup import overlap

log = logging.getLogger(__name__)
POLL_S = 0.5
CALL_TIMEOUT_S = 60


class Run:
    def __init__(self, cfg: RunConfig, progress: bool = True, resume: bool = False):
        self.cfg = cfg
        self.resume = resume  # `train --resume`: go on from <out>/resume (cluster/resume.py)
        self.calls: LearnerCalls | None = None  # calls to the learner, through its restarts
        self.out = Path(cfg.out)
        self.progress = progress
        self.task = get_task(cfg.task)
        self.owns_ray = False
        self.evaluator: Evaluator | None = None
        self.feedback: FeedbackSide | None = None
        self.learner = None
        self.pool: RolloutPool | None = None
        self.scaler: Scaler | None = None  # rewardloop scale / rollout.autoscale (scaling.py)
        self.placement: Placement | None = None
        self.placement_record: dict = {}
        self.endpoints: dict = {}
        self.steps = RunSteps(keep_for(cfg))  # the newest only: metrics.jsonl has them all
        self.evals: list[dict] = []
        self.metrics_log: MetricsLog | None = None
        self.error = ""
        self.target_version: int | None = None  # the evaluated version that reached eval.target
        self.target_weights = None  # that version's weights: its object ref (held, not copied)
        self._evaluated = None  # the ref of the newest evaluated version
        self.worker_stats: list[dict] = []
        self.feedback_stats: dict = {}
        self.checkpoint = self.out / "checkpoint"
        self._t: dict[str, float] = {"start": time.perf_counter()}
        self._stopped = False

    # -- before Ray ------------------------------------------------------------------------
    def prepare(self) -> None:
        """Resolve paths, build (or find) the model, set up evaluation: all before Ray starts."""
        self.out.mkdir(parents=True, exist_ok=True)
        prepare_dir(self.out, self.resume)
        self.cfg = absolute_paths(self.cfg)
        # spools and audit (cluster/accounting_report.py): this run's alone; a resumed run keeps them
        self.cfg = accounting_report.prepare(self.cfg, fresh=not self.resume)
        self.evaluator = Evaluator(self.cfg)  # builds the default model once (cached)
        # The driver's evaluations share the CPUs with the actors: more than one OpenMP thread
        # here spins against them (measured: many times slower steps on 2 cores).
        torch.set_num_threads(1)
        self.cfg = replace(self.cfg, model={"name_or_path": self.evaluator.model_path})
        hint = idle_workers_hint(self.cfg)
        if hint:
            log.warning(hint)
        self._t["prepared"] = time.perf_counter()

    def prepare_and_connect(self) -> None:
        """prepare() on a thread while connect() starts Ray: the driver's model loading (its
        transformers import, 1-2 s of CPU) overlaps Ray's start-up instead of preceding it."""
        torch.set_num_threads(1)  # for this thread, which evaluates (prepare sets its own)
        overlap(self.prepare, self.connect)

    # -- Ray lifecycle ---------------------------------------------------------------------
    def connect(self) -> None:
        """Attach to a Ray this process already has, or connect/start one (and own it)."""
        self._t["ray_start"] = time.perf_counter()
        self.owns_ray = not ray.is_initialized()
        connect(self.cfg)  # an embedded Ray starts lean (cluster/placement.py)
        stop_on_sigterm()  # after ray.init, which installs its own handler (cluster/resume.py)

    def launch(self) -> None:
        """The feedback side, the learner and the rollout workers, then training starts."""
        self.placement = reserve(self.cfg)  # ConfigError after cluster.placement_timeout_s
        self.feedback = start_feedback(self.cfg)  # feedback.autostart: a gateway for this run
        self.cfg = self.feedback.cfg
        self._t["ray"] = time.perf_counter()
        # learner.token travels resolved (an actor's environment may lack the env: variable);
        # self.cfg keeps `env:NAME`, so config.json never holds the secret
        token = resolve_token(self.cfg.learner.token, "learner.token")
        actor_cfg = replace(self.cfg, learner={"token": token})
        options = self.placement.learner_options()
        restarts = {"max_restarts": self.cfg.learner.max_restarts}
        self.learner = LearnerActor.options(**options, **restarts).remote(actor_cfg, self.resume)
        self.calls = LearnerCalls(self.learner, self.cfg)
        self.pool = RolloutPool(actor_cfg, self.learner, placement=self.placement)
        self.pool.launch(self.cfg.rollout.num_workers)  # they load while the learner loads
        self.endpoints = ray.get(self.learner.start.remote(), timeout=600)
        self.pool.start(self.endpoints)
        self._t["train"] = time.perf_counter()
        ray.get(
            self.learner.start_training.remote(self.cfg.learner.max_steps), timeout=CALL_TIMEOUT_S
        )
        # `rewardloop worker --run-dir` (actors/external.py) reads these; no token is written
        record_endpoints(
            self.out, ingest=self.endpoints["ingest"], weights=self.endpoints["weights"]
        )
        self.placement_record = self.placement.describe()
        for worker_id, slot in self.pool.slots.items():
            if slot is not None:
                self.placement_record["workers"][slot]["worker_id"] = worker_id
        write_json(self.out / "config.json", to_dict(self.cfg))
        self._record_metrics_endpoints()
        self.scaler = Scaler(actor_cfg, self.pool, self.learner)
        record_endpoints(self.out, control=self.scaler.start())  # `rewardloop scale RUN_DIR`
        if self.resume:  # the steps and evaluations before, then a line saying where it went on
            self.steps, self.evals = from_metrics(self.out / "metrics.jsonl", keep_for(self.cfg))
        self.metrics_log = MetricsLog(self.out / "metrics.jsonl", append=self.resume)
        self.calls.observe(self.calls("status"), None)
        if self.resume:
            self.metrics_log.write({"event": "resume", **self.calls("incarnation")})
        if not self.evals:
            self._record_eval({"step": 0, **self.evaluator()})  # the base model, as steps begin

    def watch(self) -> None:
        """Follow the learner until max_steps, eval.target, a learner error or a failed worker."""
        bar = tqdm(
            total=self.cfg.learner.max_steps,
            desc="train",
            unit="step",
            disable=not self.progress,
            dynamic_ncols=True,
        )
        try:
            while not self._poll_once(bar):
                time.sleep(POLL_S)  # a progress poll of the learner's metrics, not a sync point
        finally:
            bar.close()

    def _poll_once(self, bar) -> bool:
        """One look at the learner; True when the run is over (self.error says why, if badly)."""
        new = self.calls("metrics_since", len(self.steps), timeout_s=CALL_TIMEOUT_S)
        for record in new:
            record["workers"] = self.scaler.running()  # rollout workers up as of this poll
            self.metrics_log.write(record)
        self.steps.extend(new)
        for event in self.scaler.tick(len(self.steps), self.steps):
            self.metrics_log.write(event)
        if self.scaler.stop_requested:  # `rewardloop stop`: end as at max_steps
            return True
        if sigterm_received():  # `train` got SIGTERM: stop, save, resume later (resume.py)
            self.error = f"stopped by SIGTERM; continue with: rewardloop train --resume {self.out}"
            return True
        bar.update(len(new))
        if new:
            bar.set_postfix(self._postfix(new[-1]), refresh=False)
        if self._due_for_eval():
            self._evaluate_latest()
            if self._reached_target():
                return True
        status = self.calls("status", timeout_s=CALL_TIMEOUT_S)
        if self.calls.observe(status, self.metrics_log):  # Ray restarted the learner
            self._record_learner_endpoints()
        if status["done"] and len(self.steps) >= status["steps"]:
            self.error = status["error"]
            return True
        failed = self.pool.failed()  # a worker that died with restarts left is restarted there
        for death in self.pool.restarts.new_events():
            self.metrics_log.write({"event": "worker_died", **death})
        if failed:
            self.error = "rollout worker failed: " + "; ".join(failed)
            return True
        return False

    def stop(self) -> None:
        """Stop the workers (each finishes its generation), the learner's training and the
        feedback side. Safe to call more than once."""
        if self._stopped:
            return
        self._stopped = True
        self._t["stopped"] = time.perf_counter()
        if self.scaler is not None:
            self.scaler.stop()
            record_endpoints(self.out, control="")
        if self.pool is not None:
            self.worker_stats = self.pool.shutdown()
        if self.learner is not None:
            self.calls("stop", timeout_s=CALL_TIMEOUT_S)  # the final resume checkpoint too
            record_endpoints(self.out, ingest="", weights="")  # external workers: the run ended
        if self.feedback is not None:
            self.feedback_stats = self.feedback.stop()

    def save(self) -> Path:
        """Checkpoint the version that reached eval.target (its ref reaches the learner as the
        state dict), else the newest (HF directory); the newest too, with a warning, if the
        target's weights died with the learner that put them (Ray restarted it meanwhile)."""
        meta = {"steps": len(self.steps), "config": to_dict(self.cfg)}
        path, version = str(self.checkpoint), self.target_version
        try:
            self.calls("save", path, meta, version, self.target_weights, timeout_s=300)
        except ray.exceptions.ObjectLostError as exc:  # RayTaskError(OwnerDiedError) included
            log.warning("version %s lost with its learner (%s); saving the newest", version, exc)
            self.target_version = self.target_weights = None
            self.calls("save", path, meta, None, None, timeout_s=300)
        return self.checkpoint

    def finish(self) -> dict:
        """Evaluate the checkpoint as a user would load it; write the plot and summary.json."""
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(self.checkpoint, local_files_only=True)
        final = {
            "step": len(self.steps),
            "checkpoint": str(self.checkpoint),
            **self.evaluator(model),
        }
        self._record_eval(final)
        self.metrics_log.close()
        plot_reward_curve(
            reward_points(self.out / "metrics.jsonl"), self.evals, self.out / "reward_curve.png"
        )
        summary = self.summary()
        write_json(self.out / "summary.json", summary)
        return summary

    def close(self) -> None:
        """Kill this run's actors; shut Ray down only if this run started the connection."""
        for actor in [self.learner, *(self.pool.actors() if self.pool else [])]:
            if actor is not None:
                try:
                    ray.kill(actor)
                except Exception as exc:  # noqa: BLE001 - already gone is fine
                    log.debug("kill: %s", exc)
        if self.placement is not None and ray.is_initialized():
            self.placement.remove()
        if self.evaluator is not None:
            self.evaluator.close()
        if self.owns_ray and ray.is_initialized():
            ray.shutdown()
        restore_sigterm()

    def execute(self) -> dict:
        """The whole run; returns the summary. RewardLoopError if training stopped early."""
        try:
            self.prepare_and_connect()
            self.launch()
            self.watch()
            self.stop()
            self.save()
            summary = self.finish()
        finally:
            try:
                self.stop()
            finally:
                self.close()
        if self.error:
            raise RewardLoopError(
                f"training stopped early: {self.error} (see {self.out}/metrics.jsonl)"
            )
        return summary

    def _record_metrics_endpoints(self) -> None:
        """endpoints.json gets the /metrics URLs (`rewardloop status`); the worker count is set."""
        gateway = self.feedback.addresses.get("metrics_url", "") if self.feedback else ""
        record_endpoints(
            self.out, learner_metrics=self.endpoints.get("metrics", ""), gateway_metrics=gateway
        )
        self.learner.set_driver_metrics.remote(workers=len(self.pool.workers))

    def _record_learner_endpoints(self) -> None:
        """A restarted learner may serve on new ports: endpoints.json names the current ones
        (external workers follow it) and the pool tells its workers (RolloutPool.follow)."""
        self.endpoints = {**self.endpoints, **self.calls("endpoints")}
        record_endpoints(
            self.out, ingest=self.endpoints["ingest"], weights=self.endpoints["weights"]
        )
        self.pool.follow(self.endpoints)

    # -- evaluation ------------------------------------------------------------------------
    def _record_eval(self, record: dict) -> None:
        self.evals.append(record)
        self.metrics_log.write({"event": "eval", **record})
        if self.learner is not None:  # the eval metric's mean over keys, for /metrics
            value = record.get("mean", float("nan"))
            self.learner.set_driver_metrics.remote(record.get("metric", ""), value)

    def _due_for_eval(self) -> bool:
        every, n = self.cfg.eval.every_steps, len(self.steps)
        return (
            bool(every) and n - self.evals[-1]["step"] >= every and n < self.cfg.learner.max_steps
        )

    def _evaluate_latest(self) -> None:
        version, (ref,) = self.calls("latest_weights", -1, timeout_s=CALL_TIMEOUT_S)
        try:
            self.evaluator.load(ray.get(ref, timeout=CALL_TIMEOUT_S))
        except ray.exceptions.ObjectLostError:  # its learner died meanwhile: the next poll
            return
        self._evaluated = ref
        self._record_eval({"step": len(self.steps), "version": version, **self.evaluator()})

    def _reached_target(self) -> bool:
        target, rates = self.cfg.eval.target, self.evals[-1]["by_key"]
        evaluated, self._evaluated = self._evaluated, None  # a ref pins its version: not held
        if not target or not rates or min(rates.values()) < target:
            return False
        log.info("every key reached eval.target=%.2f at step %d", target, len(self.steps))
        self.target_version = self.evals[-1]["version"]
        # the learner trains on while we stop: these exact weights are saved, held by their ref
        # in the object store (the learner's registry keeps only its newest), not copied here
        self.target_weights = evaluated
        return True

    # -- reporting -------------------------------------------------------------------------
    def _postfix(self, step: dict) -> dict:
        last = self.evals[-1]
        rates = list(last["by_key"].values())
        shown = "/".join(f"{v:.2f}" for v in rates) if len(rates) <= 4 else f"{last['mean']:.2f}"
        return {
            "reward": f"{step.get('reward_mean', 0):.2f}",
            f"eval {last['metric']}": shown or "-",
            "lag": f"{step.get('lag_mean', 0):.2f}",
            "traj/s": f"{step.get('trajectories_per_s', 0):.0f}",
        }

    def summary(self) -> dict:
        t = self._t
        train_s = t.get("stopped", time.perf_counter()) - t["train"]
        section = run_summary.eval_section(self.evals, self.steps.ends(run_summary.TAIL_STEPS))
        out = {
            **run_summary.run_figures(list(self.steps), self.worker_stats, train_s),
            **self.steps.totals(),  # exact over every step, not only the kept ones
            "seconds": round(time.perf_counter() - t["start"], 2),
            "task": self.cfg.task,
            "algorithm": self.cfg.learner.algorithm,
            "max_staleness": self.cfg.learner.max_staleness,
            "num_workers": self.cfg.rollout.num_workers,
            "base_model": self.cfg.model.name_or_path,
            "final_model": str(self.checkpoint),
            "eval": section,
            "rate_mean_start": section["start"],
            "rate_mean_end": section["end"],
            "setup": {  # seconds before training: model, Ray start-up, the learner loading
                "before_ray_s": round(t["ray_start"] - t["start"], 2),
                "prepare_s": round(t.get("prepared", t["ray_start"]) - t["start"], 2),
                "ray_init_s": round(t["ray"] - t["ray_start"], 2),
                "learner_ready_s": round(t["train"] - t["ray"], 2),
                "total_s": round(t["train"] - t["start"], 2),
            },
            "error": self.error,
            "learner_device": self.endpoints.get("device", ""),
            "placement": self.placement_record,  # the node of the learner and of each worker
        }
        if self.task.summary_section:
            out[self.task.summary_section] = run_summary.audience_by_key(section, self.task.metric)
        if self.feedback_stats:
            out["feedback"] = self.feedback_stats
        out["learner_restarts"] = self.calls.restarts if self.calls else []  # cluster/resume.py
        # every generated id's one outcome, from the spools and the learner's audit
        out["accounting"] = accounting_report.write_joined(self.cfg)
        if self.pool is not None:
            out["worker_restarts"] = self.pool.restarts.summary()
        return out


def train(cfg: RunConfig, progress: bool = True, resume: bool = False) -> dict:
    """Run the whole loop; returns the summary (also written to <out>/summary.json).
    `resume`: go on from the run directory's resume checkpoint (cluster/resume.py)."""
    return Run(cfg, progress, resume).execute()
