"""Where actors go: the learner gets a GPU when the cluster has one, workers get a CPU each."""

from __future__ import annotations

import os

import ray

from rewardloop.config import RunConfig


def connect(cfg: RunConfig) -> None:
    """Join cfg.cluster.address (else RAY_ADDRESS), or start an embedded local Ray sized for
    the run; nothing when this process is already connected."""
    if ray.is_initialized():
        return
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage-stats reporting at start-up
    address = cfg.cluster.address or os.environ.get("RAY_ADDRESS", "")
    if address:
        ray.init(address=address, include_dashboard=False, log_to_driver=True)
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Ray starts worker processes at nice 15: the learner and the rollout actors would lose the
    # CPU to the driver's evaluations and to any other process. They are the run: nice 0.
    os.environ.setdefault("RAY_worker_niceness", "0")
    needed = 1 + cfg.rollout.num_workers
    num_cpus = cfg.cluster.num_cpus or max(os.cpu_count() or 1, needed)
    ray.init(
        num_cpus=max(num_cpus, needed),
        include_dashboard=False,
        log_to_driver=True,
        configure_logging=True,
        logging_level="WARNING",
    )


def learner_gpus(cfg: RunConfig) -> float:
    if cfg.learner.device == "cpu":
        return 0
    if cfg.cluster.learner_gpus >= 0:
        return cfg.cluster.learner_gpus
    return 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0


def learner_options(cfg: RunConfig) -> dict:
    return {"num_cpus": 1, "num_gpus": learner_gpus(cfg)}


def rollout_options(cfg: RunConfig) -> dict:
    return {"num_cpus": 1, "num_gpus": 0}
