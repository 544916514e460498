"""Thin Ray shells over the plain learner and rollout classes (the only place Ray lives).

The learner actor publishes each version with `ray.put` and hands out the object ref; rollout
actors fetch the newest ref between generations, so in-cluster weights travel through the
object store. Rollout actors stream trajectories to the learner's gRPC ingest server.
"""

from __future__ import annotations

import logging
import os
import threading

import ray
import torch

from rewardloop.config import RunConfig
from rewardloop.modeling import load_policy

RECENT_VERSIONS = 8


def _setup(threads: int) -> None:
    torch.set_num_threads(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def _advertised(address: str) -> str:
    """Replace a wildcard bind address with this node's IP so other nodes can connect."""
    host, _, port = address.rpartition(":")
    if host in ("0.0.0.0", "[::]", "::"):
        host = ray.util.get_node_ip_address()
    return f"{host}:{port}"


@ray.remote(max_concurrency=8)
class LearnerActor:
    """Ray shell over learner.service.LearnerService."""

    def __init__(self, cfg: RunConfig):
        from rewardloop.learner.service import LearnerService

        _setup(cfg.learner.torch_threads)
        device = cfg.learner.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model, tokenizer, self.model_path = load_policy(cfg.model, cfg.task)
        self._latest: tuple[int, list] | None = None
        self._recent: dict[int, ray.ObjectRef] = {}
        self._lock = threading.Lock()
        self.service = LearnerService(cfg, model, tokenizer, publish=self._publish, device=device)
        self.device = device

    def _publish(self, version: int, state: dict) -> None:
        ref = ray.put(state)
        with self._lock:
            self._latest = (version, [ref])  # wrapped in a list so Ray hands back the ref itself
            self._recent[version] = (
                ref  # a few recent versions, so the driver can save one it evaluated
            )
            for old in sorted(self._recent)[:-RECENT_VERSIONS]:
                del self._recent[old]

    def start(self) -> dict:
        address = self.service.start()
        return {
            "ingest": _advertised(address),
            "weights": _advertised(self.service.weight_address)
            if self.service.weight_address
            else "",
            "device": self.device,
            "model_path": self.model_path,
        }

    def start_training(self, max_steps: int) -> None:
        self.service.start_training(max_steps)

    def latest_weights(self, have_version: int):
        with self._lock:
            if self._latest is None or self._latest[0] <= have_version:
                return None
            return self._latest

    def status(self) -> dict:
        return self.service.status()

    def metrics_since(self, index: int) -> list[dict]:
        return self.service.metrics[index:]

    def save(
        self, path: str, meta: dict, version: int | None = None, weights: dict | None = None
    ) -> str:
        """Checkpoint the current weights, or those of `version` (one the driver evaluated): given
        as `weights`, else looked up among the recent versions."""
        if weights is None:
            with self._lock:
                ref = self._recent.get(version) if version is not None else None
            weights = ray.get(ref) if ref is not None else None
        return self.service.save(
            path, meta, weights=weights, version=version if weights is not None else None
        )

    def stop(self) -> None:
        self.service.stop()


@ray.remote(max_concurrency=4)
class RolloutActor:
    """Ray shell over actors.rollout.RolloutWorker."""

    def __init__(self, worker_id: str, cfg: RunConfig, learner, endpoints: dict, seed: int):
        from rewardloop.actors.rollout import RolloutWorker
        from rewardloop.actors.trajectory_client import TrajectoryClient
        from rewardloop.cluster import tasks

        _setup(cfg.rollout.torch_threads)
        model, tokenizer, _ = load_policy(cfg.model, cfg.task)
        self._learner = learner
        self._stop = threading.Event()
        timeout = cfg.rollout.rpc_timeout_s
        self.client = TrajectoryClient(
            endpoints["ingest"],
            worker_id,
            timeout_s=timeout,
            batch_size=cfg.rollout.send_batch_size,
        )
        if cfg.rollout.weight_sync == "grpc":
            from rewardloop.actors.weight_client import WeightClient

            weights = WeightClient(endpoints["weights"], timeout_s=timeout).poll
        else:
            weights = self._object_store_weights
        self.worker = RolloutWorker(
            worker_id,
            cfg,
            model,
            tokenizer,
            tasks.prompt_source(cfg),
            tasks.reward_source(cfg, seed),
            self.client,
            weights=weights,
            seed=seed,
        )
        self._timeout = timeout

    def _object_store_weights(self, have_version: int):
        latest = ray.get(self._learner.latest_weights.remote(have_version), timeout=self._timeout)
        if latest is None:
            return None
        version, (ref,) = latest
        return version, ray.get(ref, timeout=self._timeout)

    def run(self, max_generations: int | None = None) -> dict:
        try:
            return self.worker.run(self._stop, max_generations)
        finally:
            self.client.close()

    def stats(self) -> dict:
        return {"version": self.worker.version, **self.worker.counters}

    def stop(self) -> None:
        self._stop.set()
        self.client.abort()  # a send waiting for credits returns now
