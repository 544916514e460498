"""The learner without Ray: ingest server + buffer + trainer + weight publishing + metrics.

`cluster/` wraps this in a Ray actor; tests drive it directly. The training loop waits (with a
timeout) for `groups_per_step` complete groups, trains, and publishes version N+1 through the
`publish` callback (the Ray object store in-cluster) and, when enabled, the gRPC WeightService.

Accounting: the buffer's `Ledger` (learner/accounting.py) gets every id's outcome; this service
records the trained ones once their step is done, and on `stop` what is still in flight. With
`audit_dir` (the run's `audit/`) the ledger keeps its audit file there.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable

import torch

from rewardloop import lora
from rewardloop.auth import ServerSecurity
from rewardloop.config import RunConfig, buffer_capacity
from rewardloop.learner.accounting import Ledger
from rewardloop.learner.buffer import TrajectoryBuffer
from rewardloop.learner.checkpoint import save_checkpoint
from rewardloop.learner.durability import Checkpointer, restore_learner
from rewardloop.learner.ingest_server import IngestServer
from rewardloop.learner.live_metrics import LearnerMetrics
from rewardloop.learner.resume_state import ResumeStore
from rewardloop.learner.step_log import StepLog
from rewardloop.learner.trainer import Trainer
from rewardloop.learner.weight_server import WeightServer
from rewardloop.trajectory import Trajectory

log = logging.getLogger(__name__)
Publish = Callable[[int, dict[str, torch.Tensor]], None]


class LearnerService:
    def __init__(
        self,
        cfg: RunConfig,
        model,
        tokenizer,
        publish: Publish | None = None,
        device: str = "cpu",
        resume_dir: str | None = None,
        audit_dir: str | None = None,
    ):
        lc = cfg.learner
        self.cfg = cfg
        # A new id per process: workers see it change and re-send what this one never saw.
        self.incarnation = uuid.uuid4().hex[:12]
        # Resume checkpoints (learner/durability.py) when given a directory: on the
        # learner.checkpoint_every_steps schedule and when stopping.
        self.checkpoints = (
            Checkpointer(ResumeStore(resume_dir), lc.checkpoint_every_steps) if resume_dir else None
        )
        self.tokenizer = tokenizer
        self.trainer = Trainer(
            model,
            lc,
            pad_id=tokenizer.pad_token_id,
            temperature=cfg.rollout.temperature,
            device=device,
            compute_dtype=compute_dtype(cfg, device),
            eos_id=tokenizer.eos_token_id,
            max_new_tokens=cfg.rollout.max_new_tokens,
        )
        self.full_weight_bytes = lora.full_weight_bytes(self.trainer.model)  # the whole model's
        capacity = buffer_capacity(cfg)
        self.ledger = Ledger(audit_dir)  # every id's one outcome; the audit file with audit_dir
        self.buffer = TrajectoryBuffer(
            capacity=capacity, max_staleness=lc.max_staleness, ledger=self.ledger
        )
        vocab = model.get_input_embeddings().num_embeddings
        security = ServerSecurity.from_config(lc)  # learner.token / tls_* / allow_insecure
        self.ingest = IngestServer(
            self.buffer,
            version_fn=lambda: self.trainer.version,
            port=lc.port,
            host=lc.host,
            vocab_size=vocab,
            capacity=capacity,
            credit_unit=cfg.rollout.group_size,  # workers get credits for whole groups only
            max_streams=lc.max_streams,
            max_trajectory_tokens=lc.max_trajectory_tokens,
            security=security,
            incarnation=self.incarnation,
            durable_fn=self.durable_version,
        )
        self.weight_server = (
            WeightServer(
                port=lc.weights_port, host=lc.host, security=security, max_streams=lc.max_streams
            )
            if cfg.rollout.weight_sync == "grpc" or lc.serve_weights
            else None
        )
        self._publish = publish
        # len() = steps so far; only the newest records stay (metrics.jsonl has them all)
        self.metrics = StepLog()
        self.error = ""
        self.done = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._trajectories = 0
        self._tokens = 0
        self._started_at = 0.0
        self.live = LearnerMetrics(self, lc.metrics_host, lc.metrics_port)  # README: Live metrics
        self._wait_s = 0.0
        self._elapsed_before = 0.0  # training seconds of earlier incarnations (resume)

    @property
    def version(self) -> int:
        return self.trainer.version

    def start(self) -> str:
        """Start the servers and publish the initial weights; returns the ingest address."""
        self.ingest.start()
        self.live.start()
        if self.weight_server is not None:
            self.weight_server.start()
        self.publish()
        return self.ingest.address

    @property
    def unauthenticated(self) -> int:
        """Calls the ingest and weight servers refused for a missing or wrong learner.token."""
        weights = self.weight_server.stats()["unauthenticated"] if self.weight_server else 0
        return self.ingest.stats()["unauthenticated"] + weights

    @property
    def weight_address(self) -> str:
        return self.weight_server.address if self.weight_server is not None else ""

    def publish(self) -> float:
        """Hand the current version to workers; returns seconds spent.

        With LoRA a version is the adapter's tensors only; `publish_bytes` (per version) and
        `full_weight_bytes` (what the whole model would be) say what that saves."""
        t0 = time.perf_counter()
        state = self.trainer.publish_state()
        self.publish_bytes = lora.state_bytes(state)
        if self.checkpoints is not None:  # the high-water mark first (resume_state.py)
            self.checkpoints.store.publish_mark(self.version)
        if self._publish is not None:
            self._publish(self.version, state)
        if self.weight_server is not None:
            self.weight_server.publish(self.version, state)  # encoded once, one copy
        return time.perf_counter() - t0

    def train(self, max_steps: int | None = None) -> None:
        """Train until max_steps, stop(), or starvation past learner.wait_timeout_s."""
        max_steps = max_steps or self.cfg.learner.max_steps
        lc = self.cfg.learner
        # Strictly on-policy: credits the take releases at version V are granted only once V + 1
        # is published, so that workers generate the next step's data with V + 1 (credits.py).
        on_policy = lc.max_staleness == 0
        self._started_at = time.perf_counter()
        waiting_since = time.perf_counter()
        try:
            while len(self.metrics) < max_steps and not self._stop.is_set():
                if on_policy:
                    self.ingest.hold_credits()
                try:
                    groups = self.buffer.take_groups(
                        lc.groups_per_step, self.version, timeout_s=0.25
                    )
                    if groups is not None:
                        self._record(groups, time.perf_counter() - waiting_since)
                        waiting_since = time.perf_counter()
                finally:
                    if on_policy:
                        self.ingest.resume_credits()
                if groups is None and time.perf_counter() - waiting_since > lc.wait_timeout_s:
                    self.error = f"no data for {lc.wait_timeout_s:.0f}s (learner.wait_timeout_s); are workers running?"
                    log.error(self.error)
                    break
            if len(self.metrics) >= max_steps:
                self._checkpoint_last_step()
        except Exception as exc:  # keep the reason for the driver instead of dying silently
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("learner loop failed")
        finally:
            self.done.set()

    def _checkpoint_last_step(self) -> None:
        """A resume checkpoint of the last step before `done` is set: the driver ends the run
        once it sees `done`, so a learner killed after that restores max_steps, not the last
        scheduled checkpoint (which would leave the steps since untrained, their ids lost)."""
        if self.checkpoints is None or self.checkpoints.last.get("step") == len(self.metrics):
            return
        try:
            self.checkpoints.save(self)
        except Exception:  # noqa: BLE001 - stop() writes the final one; the log says why
            log.exception("resume checkpoint of the last step failed")

    def _record(self, groups: list[list[Trajectory]], wait_s: float) -> None:
        version_before = self.version
        flat = [t for g in groups for t in g]
        metrics = self.trainer.step(groups)
        step = len(self.metrics) + 1
        self.ledger.trained(flat, version_before, step, skipped=bool(metrics["skipped"]))
        metrics["publish_s"] = self.publish() if metrics["skipped"] == 0 else 0.0
        metrics.update(publish_bytes=self.publish_bytes, full_weight_bytes=self.full_weight_bytes)
        self._trajectories += len(flat)
        self._tokens += sum(len(t.completion_ids) for t in flat)
        self._wait_s += wait_s
        elapsed = self._elapsed_before + time.perf_counter() - self._started_at
        lags = [version_before - t.policy_version for t in flat]
        by_key: dict[str, list[float]] = defaultdict(list)
        for t in flat:
            by_key[t.prompt_key].append(t.reward)
        stats = self.buffer.stats()
        metrics.update(
            step=len(self.metrics) + 1,
            time_s=elapsed,
            wait_s=wait_s,
            wait_fraction=self._wait_s / max(elapsed, 1e-9),
            trajectories=self._trajectories,
            trajectories_per_s=self._trajectories / max(elapsed, 1e-9),
            tokens=self._tokens,
            tokens_per_s=self._tokens / max(elapsed, 1e-9),
            lag_mean=sum(lags) / len(lags),
            lag_max=max(lags),
            dropped_stale=stats.get("dropped_stale", 0),
            rejected=stats.get("rejected", 0),
            unauthenticated=self.unauthenticated,
            reward_by_key={k: sum(v) / len(v) for k, v in sorted(by_key.items())},
        )
        if metrics["skipped"]:
            metrics["skip_reason"] = self.trainer.last_skip_reason
            log.warning("step %d skipped: %s", metrics["step"], self.trainer.last_skip_reason)
        self.metrics.append(metrics)
        self.live.on_step(metrics)
        if self.checkpoints is not None:
            self.checkpoints.after_step(self)

    def start_training(self, max_steps: int | None = None) -> None:
        self._thread = threading.Thread(
            target=self.train, args=(max_steps,), name="learner", daemon=True
        )
        self._thread.start()

    def status(self) -> dict:
        return {
            "version": self.version,
            "steps": len(self.metrics),
            "done": self.done.is_set(),
            "error": self.error,
            "buffer": self.buffer.stats(),
            "ingest": self.ingest.stats(),
            "accounting": self.ledger.counts(),
            "weights": self.weight_server.stats() if self.weight_server is not None else {},
            "incarnation": self.incarnation,
            # bounded: the driver polls this twice a second for the whole run
            "checkpoint": self.checkpoints.describe() if self.checkpoints is not None else {},
        }

    def save(
        self,
        path: str,
        meta: dict | None = None,
        weights: dict | None = None,
        version: int | None = None,
    ) -> str:
        """Save a HF checkpoint; with `weights`, those (of `version`) instead of the current ones.

        Call it after training stopped: loading `weights` replaces the trainer's parameters.
        """
        model = self.trainer.model
        if weights is not None:
            lora.load_weights(model, weights)  # a published version: adapter-only with LoRA
        meta = {
            "version": self.version if version is None else version,
            "learner_version": self.version,
            **(meta or {}),
        }
        save_checkpoint(path, model, self.tokenizer, self.trainer.trainer_state(), meta)
        return str(path)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop training and the servers; with resume checkpoints, write the final one once
        ingest has stopped (nothing is admitted after it, so no acked trajectory is missing)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
        self.ingest.stop()
        if self.checkpoints is not None and not (self._thread and self._thread.is_alive()):
            try:
                self.checkpoints.save(self)
            except Exception:  # noqa: BLE001 - the servers must still stop; the log says why
                log.exception("final resume checkpoint failed")
        if self.weight_server is not None:
            self.weight_server.stop()
        self.live.stop()
        self.ledger.write_in_flight(self.buffer.held_ids(), self.incarnation)  # as it stops

    # ---- resume (learner/durability.py) ------------------------------------------------

    def durable_version(self) -> int:
        """The version of the newest complete resume checkpoint (0: none yet); every Ack
        carries it, so workers may forget what they retained from before it."""
        return self.checkpoints.durable_version if self.checkpoints is not None else 0

    def counters_state(self) -> dict:
        elapsed = time.perf_counter() - self._started_at if self._started_at else 0.0
        return {
            "trajectories": self._trajectories,
            "tokens": self._tokens,
            "wait_s": self._wait_s,
            "elapsed_s": self._elapsed_before + elapsed,
        }

    def load_counters(self, state: dict) -> None:
        self._trajectories = int(state["trajectories"])
        self._tokens = int(state["tokens"])
        self._wait_s = float(state["wait_s"])
        self._elapsed_before = float(state["elapsed_s"])

    def restore_latest(self) -> dict | None:
        """Load the newest complete resume checkpoint, before start(); returns what was
        restored ({"step", "version", "checkpoint_dir", "from_incarnation"}) or None."""
        if self.checkpoints is None:
            return None
        store = self.checkpoints.store
        state = store.load_latest()
        if state is None:
            return None
        version = restore_learner(self, state, store.published_version())
        return {
            "step": len(self.metrics),
            "version": version,
            "checkpoint_dir": state["checkpoint_dir"],
            "from_incarnation": state.get("incarnation", ""),
        }


def compute_dtype(cfg: RunConfig, device: str) -> torch.dtype:
    """bfloat16 autocast only where it exists (model.dtype on a cuda learner); else float32."""
    bf16 = cfg.model.dtype == "bfloat16" and torch.device(device).type == "cuda"
    return torch.bfloat16 if bf16 else torch.float32
