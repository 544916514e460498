"""Object-store weight fan-out for `bench weights`: one version put once, fetched by N actors.

The in-cluster weights path as the loop runs it, without a model or trainer around it: a
publisher actor puts each version the way `LearnerActor` does (one `ObjectStoreWeights` buffer
via `ray.put`, the ref kept in a plain `learner.weight_registry.WeightRegistry`, answers
`(version, [ref])`, lookups on the "weights" concurrency group), and each fetcher actor does what
a rollout actor does between generations: ask the publisher for the newest ref and `ray.get` it,
which yields the state dict.

    with local_ray(num_cpus=6), ObjectStoreFanout(make_state, fetchers=4) as fan:
        seconds = fan.deliver(version=1, k=4)  # put + the last of 4 fetchers holding tensors

`make_state` is a picklable zero-argument callable that the publisher runs once, so the payload
is built in the publisher's process (not shipped from the driver). The clock is this node's
`time.monotonic()`, read by the driver at the start and by each fetcher at its end, so every
actor is pinned to the driver's node.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import ray
import torch
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from rewardloop.learner.weight_registry import WeightRegistry
from rewardloop.weight_wire import ObjectStoreWeights

from .actors import MAX_WAIT_S, RECENT_VERSIONS, WEIGHT_WAITERS

__all__ = ["ObjectStoreFanout", "local_ray", "plasma_usage"]


@contextmanager
def local_ray(num_cpus: int) -> Iterator[None]:
    """The Ray this process already has (left running), else a local one for the block only."""
    if ray.is_initialized():
        yield
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(
        num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False
    )
    try:
        yield
    finally:
        ray.shutdown()


def plasma_usage() -> tuple[float, int]:
    """(MiB, objects) in the object store of every node (Ray's memory summary, no dashboard)."""
    from ray._private.internal_api import memory_summary

    found = re.search(
        r"Plasma memory usage (\d+) MiB, (\d+) objects", memory_summary(stats_only=True)
    )
    if not found:
        raise RuntimeError("ray memory_summary: no 'Plasma memory usage' line")
    return float(found.group(1)), int(found.group(2))


@ray.remote(max_concurrency=8, concurrency_groups={"weights": WEIGHT_WAITERS})
class _Publisher:
    """LearnerActor's publishing half: `ray.put` each version, refs in a WeightRegistry."""

    def __init__(self, make_state: Callable[[], dict[str, torch.Tensor]], keep: int):
        torch.set_num_threads(1)  # as the learner (learner.torch_threads)
        self.state = make_state()
        self.registry = WeightRegistry(keep=keep, max_wait_s=MAX_WAIT_S)

    def ready(self) -> int:
        return len(self.state)

    def publish(self, version: int) -> float:
        """Put the state as `version` (as LearnerActor._publish); returns the seconds it took."""
        t0 = time.monotonic()
        self.registry.publish(version, ray.put(ObjectStoreWeights(self.state)))
        return time.monotonic() - t0

    @ray.method(concurrency_group="weights")
    def latest_weights(self, have_version: int):
        """(version, [ref]) if newer than `have_version`, else None (as LearnerActor's)."""
        latest = self.registry.latest(have_version)
        return None if latest is None else (latest[0], [latest[1]])


@ray.remote
class _Fetcher:
    """A rollout actor's object-store weight fetch (RolloutActor._object_store_weights)."""

    def __init__(self, publisher, timeout_s: float):
        self.publisher, self.timeout_s = publisher, timeout_s

    def ready(self) -> bool:
        return True

    def fetch(self, have_version: int) -> dict:
        latest = ray.get(self.publisher.latest_weights.remote(have_version), timeout=self.timeout_s)
        if latest is None:
            return {"t_end": time.monotonic(), "version": None, "tensors": 0}
        version, (ref,) = latest
        state = ray.get(ref, timeout=self.timeout_s)
        return {"t_end": time.monotonic(), "version": version, "tensors": len(state)}


class ObjectStoreFanout:
    """A publisher and `fetchers` fetcher actors on this node, each taking `num_cpus`."""

    def __init__(
        self,
        make_state: Callable[[], dict[str, torch.Tensor]],
        fetchers: int,
        num_cpus: float = 1,
        timeout_s: float = 120.0,
        keep: int = RECENT_VERSIONS,
    ):
        if fetchers < 1:
            raise ValueError(f"fetchers: must be >= 1, got {fetchers}")
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        opts = {"num_cpus": num_cpus, "scheduling_strategy": here}
        self.timeout_s = timeout_s
        self.publisher = _Publisher.options(**opts).remote(make_state, keep)
        self.fetchers = [
            _Fetcher.options(**opts).remote(self.publisher, timeout_s) for _ in range(fetchers)
        ]
        try:
            ray.get(
                [self.publisher.ready.remote(), *(f.ready.remote() for f in self.fetchers)],
                timeout=timeout_s,
            )
        except ray.exceptions.GetTimeoutError as exc:
            self.close()
            raise RuntimeError(
                f"object-store bench: {fetchers + 1} actors of {num_cpus} CPU were not up within "
                f"{timeout_s:.0f}s; does this node's Ray have {(fetchers + 1) * num_cpus:g} free "
                "CPUs?"
            ) from exc

    def deliver(self, version: int, k: int) -> float:
        """Seconds from publishing `version` until the last of the first `k` fetchers holds its
        state dict (the publisher's put, each fetcher's ref lookup and `ray.get`)."""
        if not 1 <= k <= len(self.fetchers):
            raise ValueError(f"k: must be in 1..{len(self.fetchers)}, got {k}")
        t0 = time.monotonic()
        ray.get(self.publisher.publish.remote(version), timeout=self.timeout_s)
        ends = ray.get(
            [f.fetch.remote(version - 1) for f in self.fetchers[:k]], timeout=self.timeout_s * 2
        )
        wrong = [e["version"] for e in ends if e["version"] != version]
        if wrong:
            raise RuntimeError(f"object-store bench: fetchers got {wrong}, not version {version}")
        return max(e["t_end"] for e in ends) - t0

    def close(self) -> None:
        """Kill the actors (their object-store refs go with them)."""
        for actor in [self.publisher, *self.fetchers]:
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone is fine
                pass

    def __enter__(self) -> ObjectStoreFanout:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
