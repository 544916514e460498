"""Where actors go: one Ray placement group holds a bundle for the learner and one per rollout
worker, sized from `cluster.learner_resources` / `cluster.rollout_resources` and laid out by
`cluster.placement_strategy`; a request the cluster cannot meet within
`cluster.placement_timeout_s` stops the run with an error naming what is short.

    placement = reserve(cfg)                     # waits for the group, or raises ConfigError
    LearnerActor.options(**placement.learner_options()).remote(...)
    RolloutActor.options(**placement.rollout_options(slot)).remote(...)   # slot 0..n-1
    placement.describe()                         # {node of each bundle} for summary.json
    placement.remove()

Workers added later by `RolloutPool.scale` beyond the initial `rollout.num_workers` get no
bundle: they are scheduled outside the group with the same resources, wherever they fit.
"""

from __future__ import annotations

import math
import os

import ray
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from rewardloop.config import RunConfig
from rewardloop.errors import ConfigError

from .startup import lean_head, lean_local_ray


def connect(cfg: RunConfig) -> None:
    """Join cfg.cluster.address (else RAY_ADDRESS), or start an embedded local Ray sized for
    the run, without the head processes it never uses (`lean_head`); nothing when this process
    is already connected."""
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
    lean_local_ray(address)  # no task events, no Ray metrics: nobody reads them here
    per_worker = cfg.cluster.rollout_resources.get("CPU", 1)
    needed = math.ceil(
        cfg.cluster.learner_resources.get("CPU", 1) + per_worker * cfg.rollout.num_workers
    )
    num_cpus = cfg.cluster.num_cpus or max(os.cpu_count() or 1, needed)
    with lean_head():  # no autoscaler monitor, no dashboard head (cluster/startup.py)
        ray.init(
            num_cpus=max(num_cpus, needed),
            include_dashboard=False,
            log_to_driver=True,
            configure_logging=True,
            logging_level="WARNING",
        )


def learner_gpus(cfg: RunConfig) -> float:
    if "GPU" in cfg.cluster.learner_resources:
        return float(cfg.cluster.learner_resources["GPU"])
    if cfg.learner.device == "cpu":
        return 0
    if cfg.cluster.learner_gpus >= 0:
        return cfg.cluster.learner_gpus
    return 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0


def learner_bundle(cfg: RunConfig) -> dict[str, float]:
    """The learner's resources: cluster.learner_resources with CPU 1 and GPU auto filled in."""
    wanted = {"CPU": 1.0, **cfg.cluster.learner_resources, "GPU": learner_gpus(cfg)}
    return {k: float(v) for k, v in wanted.items() if v > 0}


def rollout_bundle(cfg: RunConfig) -> dict[str, float]:
    """One worker's resources: cluster.rollout_resources with CPU 1 filled in."""
    wanted = {"CPU": 1.0, **cfg.cluster.rollout_resources}
    return {k: float(v) for k, v in wanted.items() if v > 0}


def _options(bundle: dict[str, float]) -> dict:
    custom = {k: v for k, v in bundle.items() if k not in ("CPU", "GPU")}
    out = {"num_cpus": bundle.get("CPU", 0), "num_gpus": bundle.get("GPU", 0)}
    return {**out, "resources": custom} if custom else out


def learner_options(cfg: RunConfig) -> dict:
    """Actor options for the learner outside any placement group."""
    return _options(learner_bundle(cfg))


def rollout_options(cfg: RunConfig) -> dict:
    """Actor options for a rollout worker outside any placement group."""
    return _options(rollout_bundle(cfg))


class Placement:
    """A ready placement group: bundle 0 is the learner's, bundles 1..n the workers'."""

    def __init__(self, cfg: RunConfig, group, bundles: list[dict[str, float]]):
        self.cfg = cfg
        self.group = group
        self.bundles = bundles

    @property
    def worker_slots(self) -> int:
        return len(self.bundles) - 1

    def _in_bundle(self, index: int) -> dict:
        strategy = PlacementGroupSchedulingStrategy(
            placement_group=self.group, placement_group_bundle_index=index
        )
        return {**_options(self.bundles[index]), "scheduling_strategy": strategy}

    def learner_options(self) -> dict:
        return self._in_bundle(0)

    def rollout_options(self, slot: int | None) -> dict:
        """Options for the worker in `slot` (0-based); None or past the group: outside it."""
        if slot is None or not 0 <= slot < self.worker_slots:
            return rollout_options(self.cfg)
        return self._in_bundle(slot + 1)

    def describe(self) -> dict:
        """The node each bundle landed on, with that node's resources (for summary.json)."""
        table = ray.util.placement_group_table(self.group)
        by_bundle = {int(i): n for i, n in table.get("bundles_to_node_id", {}).items()}
        nodes = {n["NodeID"]: n for n in ray.nodes() if n.get("Alive")}

        def where(index: int) -> dict:
            node_id = by_bundle.get(index, "")
            node = nodes.get(node_id, {})
            return {
                "node_id": node_id,
                "node_ip": node.get("NodeManagerAddress", ""),
                "node_resources": node.get("Resources", {}),
                "resources": self.bundles[index],
            }

        return {
            "strategy": self.cfg.cluster.placement_strategy,
            "learner": where(0),
            "workers": [where(i) for i in range(1, len(self.bundles))],
        }

    def remove(self) -> None:
        if self.group is not None:
            ray.util.remove_placement_group(self.group)
            self.group = None


def reserve(cfg: RunConfig) -> Placement:
    """Create the run's placement group and wait for it; ConfigError after
    cluster.placement_timeout_s naming the short resource, the cluster's figures and the key."""
    bundles = [learner_bundle(cfg)] + [rollout_bundle(cfg)] * cfg.rollout.num_workers
    strategy = cfg.cluster.placement_strategy
    group = ray.util.placement_group(bundles, strategy=strategy)
    timeout_s = cfg.cluster.placement_timeout_s
    if group.wait(timeout_seconds=timeout_s):
        return Placement(cfg, group, bundles)
    ray.util.remove_placement_group(group)
    raise ConfigError(
        f"the cluster cannot place this run within cluster.placement_timeout_s={timeout_s:g}: "
        f"the learner asks for {bundles[0]} (cluster.learner_resources), each of "
        f"{cfg.rollout.num_workers} worker(s) for {rollout_bundle(cfg)} (cluster.rollout_resources, "
        f"rollout.num_workers), strategy {strategy} (cluster.placement_strategy). "
        + " ".join(shortfall(bundles, strategy))
        + " Change those keys, add nodes that have the resources, or raise "
        "cluster.placement_timeout_s if the cluster is still scaling up."
    )


def shortfall(bundles: list[dict[str, float]], strategy: str) -> list[str]:
    """Sentences naming why `bundles` cannot be placed on the cluster as it is now."""
    total, free = ray.cluster_resources(), ray.available_resources()
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    need: dict[str, float] = {}
    for bundle in bundles:
        for name, amount in bundle.items():
            need[name] = need.get(name, 0) + amount
    out = [
        f"Short of {name}: needs {amount:g} in all, the cluster has {total.get(name, 0):g} "
        f"({free.get(name, 0):g} free now)."
        for name, amount in need.items()
        if amount > total.get(name, 0) + 1e-9
    ]
    for index, bundle in enumerate(bundles[:2]):
        fits = any(all(node.get(k, 0) >= v for k, v in bundle.items()) for node in nodes)
        if not fits:
            who = "the learner's" if index == 0 else "a worker's"
            out.append(f"No single node has {who} {bundle}.")
    if strategy == "STRICT_SPREAD" and len(bundles) > len(nodes):
        out.append(
            f"STRICT_SPREAD puts each of the {len(bundles)} bundles on its own node; the "
            f"cluster has {len(nodes)} node(s)."
        )
    if not out:
        out.append(f"Free now: {_rounded(free)} (other actors or groups hold the rest).")
    out.append(f"The cluster has {_rounded(total)}.")
    return out


def _rounded(resources: dict) -> dict:
    return {
        k: round(v, 2)
        for k, v in sorted(resources.items())
        if not k.startswith("node:") and "memory" not in k
    }
