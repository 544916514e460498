"""Relative paths in a config made absolute before the config travels to other processes.

Actors do not share the driver's working directory, so a prompt file or a reward-function file
named relative to where `rewardloop train` was typed is resolved here, once, in the driver.
"""

from __future__ import annotations

from pathlib import Path

from rewardloop.config import RunConfig, replace
from rewardloop.tasks import get_task


def _function_path(spec: str) -> str:
    module, sep, attr = spec.rpartition(":")
    if sep and module.endswith(".py"):
        return f"{Path(module).expanduser().resolve()}:{attr}"
    return spec


def _file(path: str) -> str:
    # absolute, symlinks kept (a mounted Kubernetes Secret swaps its files behind a link)
    return str(Path(path).expanduser().absolute()) if path else path


def absolute_paths(cfg: RunConfig) -> RunConfig:
    """cfg with the task's files (e.g. prompts.path), `file.py:callable` rewards and the
    learner's TLS files absolute."""
    cfg = get_task(cfg.task).localize(cfg)  # the task's own files (a prompt file)
    sources = tuple(
        {**s, "function": _function_path(s["function"])} if s.get("function") else s
        for s in cfg.reward.sources
    )
    reward = {"function": _function_path(cfg.reward.function), "sources": sources}
    lc = cfg.learner
    tls = {"tls_cert": _file(lc.tls_cert), "tls_key": _file(lc.tls_key)}
    return replace(cfg, reward=reward, learner=tls, rollout={"ca_cert": _file(cfg.rollout.ca_cert)})
