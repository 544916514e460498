"""The learner without Ray: ingest server + buffer + trainer + weight publishing + metrics.

`cluster/` wraps this in a Ray actor; tests drive it directly. The training loop waits (with a
timeout) for `groups_per_step` complete groups, trains, and publishes version N+1 through the
`publish` callback (the Ray object store in-cluster) and, when enabled, the gRPC WeightService.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable

import torch

from rewardloop.auth import ServerSecurity
from rewardloop.config import RunConfig, buffer_capacity
from rewardloop.learner.buffer import TrajectoryBuffer
from rewardloop.learner.checkpoint import save_checkpoint
from rewardloop.learner.ingest_server import IngestServer
from rewardloop.learner.live_metrics import LearnerMetrics
from rewardloop.learner.trainer import Trainer
from rewardloop.learner.weight_server import WeightServer
from rewardloop.trajectory import Trajectory

log = logging.getLogger(__name__)
Publish = Callable[[int, dict[str, torch.Tensor]], None]


class LearnerService:
    def __init__(
        self, cfg: RunConfig, model, tokenizer, publish: Publish | None = None, device: str = "cpu"
    ):
        lc = cfg.learner
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.trainer = Trainer(
            model,
            lc,
            pad_id=tokenizer.pad_token_id,
            temperature=cfg.rollout.temperature,
            device=device,
            compute_dtype=compute_dtype(cfg, device),
        )
        capacity = buffer_capacity(cfg)
        self.buffer = TrajectoryBuffer(capacity=capacity, max_staleness=lc.max_staleness)
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
        )
        self.weight_server = (
            WeightServer(port=0, host=lc.host, security=security, max_streams=lc.max_streams)
            if cfg.rollout.weight_sync == "grpc" or lc.serve_weights
            else None
        )
        self._publish = publish
        self.metrics: list[dict] = []
        self.error = ""
        self.done = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._trajectories = 0
        self._tokens = 0
        self._started_at = 0.0
        self.live = LearnerMetrics(self, lc.metrics_host, lc.metrics_port)  # README: Live metrics
        self._wait_s = 0.0

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
        """Hand the current version to workers; returns seconds spent."""
        t0 = time.perf_counter()
        state = self.trainer.state_dict_cpu()
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
        except Exception as exc:  # keep the reason for the driver instead of dying silently
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("learner loop failed")
        finally:
            self.done.set()

    def _record(self, groups: list[list[Trajectory]], wait_s: float) -> None:
        version_before = self.version
        flat = [t for g in groups for t in g]
        metrics = self.trainer.step(groups)
        metrics["publish_s"] = self.publish() if metrics["skipped"] == 0 else 0.0
        self._trajectories += len(flat)
        self._tokens += sum(len(t.completion_ids) for t in flat)
        self._wait_s += wait_s
        elapsed = time.perf_counter() - self._started_at
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
            "weights": self.weight_server.stats() if self.weight_server is not None else {},
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
            model.load_state_dict(weights)
        meta = {
            "version": self.version if version is None else version,
            "learner_version": self.version,
            **(meta or {}),
        }
        save_checkpoint(path, model, self.tokenizer, self.trainer.trainer_state(), meta)
        return str(path)

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
        self.ingest.stop()
        if self.weight_server is not None:
            self.weight_server.stop()
        self.live.stop()


def compute_dtype(cfg: RunConfig, device: str) -> torch.dtype:
    """bfloat16 autocast only where it exists (model.dtype on a cuda learner); else float32."""
    bf16 = cfg.model.dtype == "bfloat16" and torch.device(device).type == "cuda"
    return torch.bfloat16 if bf16 else torch.float32
