"""The Ray side of `rewardloop serve`: serving replicas as actors and the pool that calls them.

`ReplicaActor` is a thin shell over `serving.engine.Engine`; `ReplicaPool` sends each request
to the replica with the fewest calls in flight (every `ray.get` has a deadline), hands new
versions to all replicas through the object store (one `ray.put` per version; each replica
`ray.get`s the same buffer), and scales: `scale(n)` starts replicas that load every retained
version before they take traffic, or stops the newest ones.
"""

from __future__ import annotations

import logging
import os
import threading

import ray
import torch

from rewardloop.errors import Unavailable
from rewardloop.modeling import load_policy
from rewardloop.weight_wire import ObjectStoreWeights

log = logging.getLogger(__name__)


@ray.remote(max_concurrency=64)
class ReplicaActor:
    def __init__(self, cfg, seed: int, threads: int = 1):
        from rewardloop.serving.engine import Engine

        torch.set_num_threads(threads)
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        model, tokenizer, _ = load_policy(cfg)
        self.engine = Engine(model, tokenizer, seed=seed)

    def load(self, version: int, weights: list) -> int:
        """Hold `version`: `weights` is [ref] to its state (a list, so Ray passes the ref), or
        [None] for the base model's own."""
        (ref,) = weights
        self.engine.load(version, None if ref is None else ray.get(ref, timeout=60))
        return version

    def keep(self, versions: list[int]) -> None:
        self.engine.keep(versions)

    def generate(self, version, prompt_ids, n, max_tokens, temperature, timeout_s):
        return self.engine.generate(version, prompt_ids, n, max_tokens, temperature, timeout_s)

    def stats(self) -> dict:
        return {"versions": self.engine.versions(), "batches": self.engine.batches,
                "rows": self.engine.rows}  # fmt: skip


class ReplicaPool:
    def __init__(self, cfg, replicas: int, seed: int = 0, rpc_timeout_s: float = 60.0):
        self.cfg, self.seed, self.timeout = cfg, seed, rpc_timeout_s
        self.refs: dict[int, list] = {0: [None]}  # version -> [object ref] (0 = base weights)
        self.retained: list[int] = [0]
        self.actors: list = []
        self.in_flight: dict[int, int] = {}
        self._lock = threading.Lock()
        self._next_id = 0
        self.scale(replicas)

    # ---- the Engine-shaped calls ServeCore and LiveLoop make ----------------------------------

    def generate(self, version, prompt_ids, n, max_tokens, temperature, timeout_s):
        with self._lock:
            if not self.actors:
                raise Unavailable("serve.replicas: no replica is running")
            actor = min(self.actors, key=lambda a: self.in_flight[id(a)])
            self.in_flight[id(actor)] += 1
        try:
            ref = actor.generate.remote(version, prompt_ids, n, max_tokens, temperature, timeout_s)
            return ray.get(ref, timeout=timeout_s + 5.0)
        except ray.exceptions.GetTimeoutError:
            raise Unavailable(f"replica: no answer within {timeout_s} s") from None
        finally:
            with self._lock:
                if id(actor) in self.in_flight:
                    self.in_flight[id(actor)] -= 1

    def publish(self, version: int, state: dict) -> None:
        """Put `version` in the object store once and load it on every replica."""
        ref = ray.put(ObjectStoreWeights(state))
        with self._lock:
            self.refs[version] = [ref]
            actors = list(self.actors)
        ray.get([a.load.remote(version, [ref]) for a in actors], timeout=self.timeout)

    def retain(self, versions: list[int]) -> None:
        with self._lock:
            self.retained = list(versions)
            for v in [v for v in self.refs if v not in versions]:
                del self.refs[v]
            actors = list(self.actors)
        ray.get([a.keep.remote(versions) for a in actors], timeout=self.timeout)

    # ---- scaling ----------------------------------------------------------------------------

    def scale(self, n: int) -> int:
        """Run `n` replicas: new ones load every retained version before taking requests."""
        while len(self.actors) < n:
            actor = ReplicaActor.remote(self.cfg, self.seed + self._next_id)
            self._next_id += 1
            with self._lock:
                loads = [actor.load.remote(v, self.refs[v]) for v in self.retained]
            ray.get(loads, timeout=self.timeout)
            with self._lock:
                self.actors.append(actor)
                self.in_flight[id(actor)] = 0
        while len(self.actors) > n:
            with self._lock:
                actor = self.actors.pop()
                self.in_flight.pop(id(actor), None)
            ray.kill(actor)
        return len(self.actors)

    def stats(self) -> list[dict]:
        return ray.get([a.stats.remote() for a in self.actors], timeout=self.timeout)

    def close(self) -> None:
        self.scale(0)
