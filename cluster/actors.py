"""Thin Ray shells over the plain learner and rollout classes (the only place Ray lives).

The learner actor publishes each version with `ray.put` and hands out the object ref; rollout
actors fetch the newest ref between generations, so in-cluster weights travel through the
object store. A worker that must have newer weights blocks in `LearnerActor.wait_for_version`
(a long-poll on its own thread pool, the "weights" concurrency group, so waiting workers never
hold up the driver's calls) instead of polling. Rollout actors stream trajectories to the
learner's gRPC ingest server; they are created before the learner has started (they load their
model meanwhile) and are given its endpoints in `run`.
"""

from __future__ import annotations

import logging
import os
import threading

import ray
import torch

from rewardloop.config import RunConfig
from rewardloop.learner.weight_registry import WeightRegistry
from rewardloop.weight_wire import ObjectStoreWeights

RECENT_VERSIONS = 1
"""Versions the learner keeps in its registry: the newest only. Only the newest is ever handed
out (`latest_weights`, `wait_for_version`), and a ref handed out stays in the object store for
as long as its holder keeps it (Ray's reference counting: a worker's fetch in progress, the
driver's evaluation), so each version kept beyond it only pinned another copy of the weights
(at 8, with a 100 MB state: 762 MiB of the object store after 10 versions, against 95 MiB)."""
WEIGHT_WAITERS = 64  # threads for weight fetches and long-polls: one per rollout worker, at most
MAX_WAIT_S = 10.0  # longest one long-poll call is held in the learner
LEARNER_AWAY = (
    ray.exceptions.RayActorError,
    ray.exceptions.GetTimeoutError,
    ray.exceptions.ObjectLostError,
)
"""What a call to a learner that Ray is restarting raises (ActorDiedError and
ActorUnavailableError are RayActorErrors), one that did not answer in time, or weights whose
owner (the learner process that put them) died (OwnerDiedError is an ObjectLostError)."""


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


def _advertised_url(url: str) -> str:
    """`_advertised` for an http://host:port/path URL ("" stays "")."""
    if not url:
        return ""
    head, _, path = url.removeprefix("http://").partition("/")
    return f"http://{_advertised(head)}/{path}"


@ray.remote(max_concurrency=8, concurrency_groups={"weights": WEIGHT_WAITERS})
class LearnerActor:
    """Ray shell over learner.service.LearnerService; its versions live in a WeightRegistry of
    object refs (answers are `(version, [ref])`: a list, so Ray hands back the ref itself)."""

    def __init__(self, cfg: RunConfig, resume: bool = False):
        from .resume import boot_learner

        _setup(cfg.learner.torch_threads)
        device = cfg.learner.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.registry = WeightRegistry(keep=RECENT_VERSIONS, max_wait_s=MAX_WAIT_S)
        # Fresh, resumed (`train --resume`) or restarted by Ray after its process died: then it
        # comes back from its newest resume checkpoint and serves and trains again on its own
        # (cluster/resume.py), while the driver's calls retry through the restart.
        self.service, self.model_path, self.boot = boot_learner(cfg, self._publish, device, resume)
        self._endpoints: dict = {}
        self._training = False
        if self.boot["restarted"]:
            self.start()
            self.start_training(cfg.learner.max_steps)

    def _publish(self, version: int, state: dict) -> None:
        ref = ray.put(ObjectStoreWeights(state))  # one buffer; ray.get returns the state dict
        self.registry.publish(version, ref)

    @staticmethod
    def _reply(latest: tuple[int, ray.ObjectRef] | None):
        return None if latest is None else (latest[0], [latest[1]])

    def start(self) -> dict:
        from .resume import record_ports

        if self._endpoints:  # already serving (a restarted learner starts itself)
            return self._endpoints
        address = self.service.start()
        record_ports(self.service)
        self._endpoints = {
            "ingest": _advertised(address),
            "weights": _advertised(self.service.weight_address)
            if self.service.weight_address
            else "",
            "device": self.device,
            "model_path": self.model_path,
            "metrics": _advertised_url(self.service.live.url),
        }
        return self._endpoints

    def endpoints(self) -> dict:
        """What start() answered ({} before): a restarted learner may serve on new ports."""
        return self._endpoints

    def incarnation(self) -> dict:
        """This learner process: its id, pid, and what it was restored from (resume.py)."""
        return {"incarnation": self.service.incarnation, "pid": os.getpid(), **self.boot}

    def start_training(self, max_steps: int) -> None:
        if not self._training:  # a restarted learner is training already
            self._training = True
            self.service.start_training(max_steps)

    @ray.method(concurrency_group="weights")
    def latest_weights(self, have_version: int):
        """(version, [ref]) of the newest weights if newer than `have_version`, else None."""
        return self._reply(self.registry.latest(have_version))

    @ray.method(concurrency_group="weights")
    def wait_for_version(self, newer_than: int, timeout_s: float):
        """Long-poll: like `latest_weights`, but blocks up to `timeout_s` (<= MAX_WAIT_S) for a
        version newer than `newer_than` to be published."""
        return self._reply(self.registry.wait_for_newer(newer_than, timeout_s))

    def status(self) -> dict:
        return self.service.status()

    def metrics_since(self, index: int) -> list[dict]:
        return self.service.metrics[index:]

    def set_driver_metrics(
        self, eval_metric: str = "", eval_value: float | None = None, workers: int | None = None
    ) -> None:
        """The driver's figures for /metrics: the latest eval metric and the worker count."""
        self.service.live.set_driver(eval_metric, eval_value, workers)

    def save(
        self, path: str, meta: dict, version: int | None = None, weights: dict | None = None
    ) -> str:
        """Checkpoint the current weights, or those of `version` (one the driver evaluated): given
        as `weights`, else the registry's if it is the newest."""
        if weights is None:
            ref = self.registry.get(version) if version is not None else None
            weights = ray.get(ref) if ref is not None else None
        return self.service.save(
            path, meta, weights=weights, version=version if weights is not None else None
        )

    def stop(self) -> None:
        self.service.stop()


@ray.remote(max_concurrency=4)
class RolloutActor:
    """Ray shell over actors.rollout.RolloutWorker. Created before the learner is up (it loads
    its model meanwhile); `run(endpoints)` connects to the learner and loops.

    Restartable (`rollout.max_restarts`, cluster/pool.py): what it sends goes through its spool
    (actors/spool.py, `<spool_dir>/<worker_id>/`), so when Ray restarts a killed worker (the
    constructor runs again with the same worker id) and the driver calls `run` again, the new
    process re-sends what the dead one never got acked before it generates anything new."""

    def __init__(self, worker_id: str, cfg: RunConfig, learner, seed: int):
        from rewardloop.feedback.sources.for_task import train_reward_source
        from rewardloop.tasks import get_task

        _setup(cfg.rollout.torch_threads)
        self.worker_id, self.cfg, self.seed = worker_id, cfg, seed
        from rewardloop.modeling import load_policy  # transformers: not at import (run.py)

        self.model, self.tokenizer, _ = load_policy(cfg)
        self.prompts = get_task(cfg.task).prompts(cfg)
        self.reward = train_reward_source(cfg, seed)
        self._learner = learner
        self._stop = threading.Event()
        self._draining = False
        self._timeout = cfg.rollout.rpc_timeout_s
        self.client = None
        self.weight_client = None
        self.worker = None
        self.sink = None
        self.restarted = ray.get_runtime_context().was_current_actor_reconstructed
        self._follow_lock = threading.Lock()
        self._followed: dict = {}  # the newest endpoints `follow` was told (a moved learner)

    def ready(self) -> str:
        """Answers once the constructor (model loading) is done."""
        return self.worker_id

    def _object_store_weights(self, have_version: int):
        try:
            latest = ray.get(
                self._learner.latest_weights.remote(have_version), timeout=self._timeout
            )
            return self._fetch(latest)
        except LEARNER_AWAY:  # restarting (learner.max_restarts): no newer weights for now
            self._stop.wait(1.0)  # a back-off, not a sync point: keeps a wait loop from spinning
            return None

    def _object_store_wait(self, newer_than: int, timeout_s: float):
        try:
            ref = self._learner.wait_for_version.remote(newer_than, timeout_s)
            return self._fetch(ray.get(ref, timeout=timeout_s + self._timeout))
        except LEARNER_AWAY:
            self._stop.wait(1.0)
            return None

    def _fetch(self, latest):
        if latest is None:
            return None
        version, (ref,) = latest
        return version, ray.get(ref, timeout=self._timeout)

    def _build(self, endpoints: dict) -> None:
        from rewardloop.actors.rollout import RolloutWorker
        from rewardloop.actors.spool import Spool, spool_root
        from rewardloop.actors.spooled_sink import SpooledSink

        cfg = self.cfg
        with self._follow_lock:  # a `follow` newer than what `run` was given wins
            if self._followed.get("epoch", 0) > endpoints.get("epoch", 0):
                endpoints = self._followed
            self._followed = dict(endpoints)
            self._build_clients(endpoints)
        spool = Spool(spool_root(cfg) / self.worker_id, retain_acked=cfg.rollout.retain_acked)
        self.sink = SpooledSink(self.client, spool)  # holds what is sent until it is durable
        if self.weight_client is not None:
            weights, wait = self.weight_client.poll, self.weight_client.wait_for_version
        else:
            weights, wait = self._object_store_weights, self._object_store_wait
        self.worker = RolloutWorker(
            self.worker_id,
            cfg,
            self.model,
            self.tokenizer,
            self.prompts,
            self.reward,
            self.sink,
            weights=weights,
            seed=self.seed,
            wait_weights=wait,
        )
        self.worker.on_dropped = self.sink.dropped

    def _build_clients(self, endpoints: dict) -> None:
        from rewardloop.actors.trajectory_client import TrajectoryClient
        from rewardloop.auth import resolve_token

        cfg = self.cfg
        # the driver ships learner.token resolved (cluster/run.py); ca_cert: the learner's TLS
        token = resolve_token(cfg.learner.token, "learner.token")
        secure = {"ca_cert": cfg.rollout.ca_cert, "token": token}
        self.client = TrajectoryClient(
            endpoints["ingest"],
            self.worker_id,
            timeout_s=self._timeout,
            batch_size=cfg.rollout.send_batch_size,
            # through a learner restart: reconnect that long, re-send what it may lack
            reconnect_s=cfg.learner.restart_timeout_s if cfg.learner.max_restarts else 0.0,
            retain_acked=cfg.rollout.retain_acked,
            **secure,
        )
        if cfg.rollout.weight_sync == "grpc":
            from rewardloop.actors.weight_client import WeightClient

            self.weight_client = WeightClient(
                endpoints["weights"], timeout_s=self._timeout, **secure
            )

    def follow(self, endpoints: dict) -> None:
        """The learner moved: Ray restarted it and its old port was taken, so it serves on
        another (`RolloutPool.follow` tells every worker). The clients dial the new address on
        their next attempt (they re-read `target` on every (re)connect), which ends a reconnect
        loop that was knocking at the old one; a later `run` builds its clients for it."""
        with self._follow_lock:
            if self._followed.get("epoch", 0) > endpoints.get("epoch", 0):
                return  # an older move, told late
            self._followed = dict(endpoints)
            if self.client is not None and endpoints.get("ingest"):
                self.client.target = endpoints["ingest"]
            if self.weight_client is not None and endpoints.get("weights"):
                self.weight_client.target = endpoints["weights"]

    def run(self, endpoints: dict, max_generations: int | None = None) -> dict:
        if self._stop.is_set():
            return {}
        self._build(endpoints)
        try:
            self._resend()
            counters = self.worker.run(self._stop, max_generations)
            if self._draining:  # a scale-down: what the last generation made is sent first
                counters = self.worker.drain(self._timeout)
            return {**self._identity(), **counters, **self.sink.spool_stats()}
        finally:
            self.client.close()
            if self.weight_client is not None:
                self.weight_client.close()
            self.sink.spool.close()

    def _resend(self) -> None:
        """What a killed predecessor left unacked in the spool goes first (de-duplicated by id
        at the learner); if the learner is unreachable now, the client carries it on."""
        from rewardloop.errors import Unavailable

        try:
            self.sink.resend_unacked()
        except Unavailable as exc:
            logging.getLogger(__name__).warning("%s: re-send: %s", self.worker_id, exc)

    def _identity(self) -> dict:
        return {"worker_id": self.worker_id, "restarted": self.restarted, "pid": os.getpid()}

    def pid(self) -> int:
        """This worker's process id (a fault test or `rewardloop chaos` kills it)."""
        return os.getpid()

    def stats(self) -> dict:
        if self.worker is None:
            return {}
        spool = self.sink.spool_stats() if self.sink is not None else {}
        return {**self._identity(), "version": self.worker.version, **self.worker.counters, **spool}

    def stop(self) -> None:
        self._stop.set()
        if self.client is not None:
            self.client.abort()  # a send waiting for credits returns now

    def drain(self) -> None:
        """Leave the run (RolloutPool.scale): finish the current generation and send it, and
        whatever else is held, before run() returns. Unlike stop(), the stream stays open, so
        the last groups still get credits and acks from the learner, which is still training."""
        self._draining = True
        self._stop.set()
