"""A rollout worker outside the Ray cluster: a plain process next to a user's own service.

`rewardloop worker` builds one (the CLI makes the model, prompts and reward source, since only
it may import `feedback/`); it speaks to the learner exactly as an in-cluster worker does:

    trajectories -> TrajectoryService.Stream (TrajectoryClient: credits, acks, carry-over)
    weights      <- WeightService.Subscribe   (WeightClient: poll + long-poll)

Endpoints come from `--learner HOST:PORT [--weights HOST:PORT]`, or from the run directory's
`endpoints.json` (`ingest` and `weights` keys, written by `cluster/run.py` once the learner is
up; `ingest` is "" after the run stopped). When the learner goes away the clients rebuild their
channels with exponential backoff for `reconnect_s`; unsent trajectories are kept and resent
(their ids make duplicates harmless). If the learner is still unreachable after that, the
endpoints are read again: a new address (a restarted run on another port) is followed, with
what the old client still held (unsent, or acked but not yet in a learner checkpoint: handed
over, never dropped); the same address (or none) ends the worker. `stop` (SIGINT/SIGTERM in the CLI) lets the current
generation finish and flush; `abort()` breaks off waits at once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from rewardloop.actors.rollout import RolloutWorker
from rewardloop.actors.trajectory_client import TrajectoryClient
from rewardloop.actors.weight_client import WeightClient
from rewardloop.config import RunConfig
from rewardloop.errors import ConfigError, Unavailable

log = logging.getLogger(__name__)
ENDPOINTS_FILE = "endpoints.json"
POLL_S = 0.2  # how often a worker waiting for a run looks at its endpoints.json

Endpoints = Callable[[float], dict]
"""endpoints(timeout_s) -> {"ingest": ..., "weights": ...}; Unavailable when none in time."""


def read_endpoints(run_dir: str | Path) -> dict:
    """The run directory's endpoints.json ({} while absent or half-written)."""
    try:
        return json.loads((Path(run_dir) / ENDPOINTS_FILE).read_text())
    except (OSError, ValueError):
        return {}


def run_dir_endpoints(run_dir: str | Path, stop: threading.Event) -> Endpoints:
    """Endpoints from a run directory: waits (up to timeout_s, or stop) for a live learner."""

    def endpoints(timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            found = read_endpoints(run_dir)
            if found.get("ingest"):
                return found
            if stop.wait(min(POLL_S, max(0.0, deadline - time.monotonic()))) or (
                time.monotonic() >= deadline
            ):
                raise Unavailable(
                    f"{Path(run_dir) / ENDPOINTS_FILE}: no learner endpoints within {timeout_s}s"
                )

    return endpoints


def fixed_endpoints(ingest: str, weights: str) -> Endpoints:
    """Endpoints given on the command line (`--learner`, `--weights`)."""
    return lambda timeout_s: {"ingest": ingest, "weights": weights}


RETRY_FIRST_S, RETRY_MAX_S = 0.5, 5.0  # backoff between tries of the same learner


class ExternalWorker:
    """One RolloutWorker against a learner reached over the network, reconnecting as needed."""

    def __init__(
        self,
        worker_id: str,
        cfg: RunConfig,
        model,
        tokenizer,
        prompts,
        reward,
        endpoints: Endpoints,
        *,
        token: str = "",
        ca_cert: str = "",
        reconnect_s: float = 30.0,
        wait_s: float = 600.0,
        seed: int = 0,
    ):
        self.worker_id, self.cfg = worker_id, cfg
        self._parts = (model, tokenizer, prompts, reward)
        self._endpoints = endpoints
        self._secure = {"token": token, "ca_cert": ca_cert}
        self.reconnect_s, self.wait_s, self.seed = reconnect_s, wait_s, seed
        self.target: dict = {}
        self.client: TrajectoryClient | None = None
        self.weights: WeightClient | None = None
        self.worker: RolloutWorker | None = None
        self.stopped_because = ""

    def run(
        self,
        stop: threading.Event,
        max_generations: int | None = None,
        duration_s: float | None = None,
    ) -> dict:
        """Generate and send until stop, `max_generations`, `duration_s`, or the learner is
        gone for good; returns the counters (also when it stopped on an error)."""
        timer = threading.Timer(duration_s, stop.set) if duration_s else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            self._loop(stop, max_generations)
        finally:
            if timer is not None:
                timer.cancel()
            self.close()
        return self.counters()

    def _loop(self, stop: threading.Event, max_generations: int | None) -> None:
        wait = self.wait_s
        down_since = None  # start of the current outage: reconnect_s counts from there
        backoff = RETRY_FIRST_S
        while not stop.is_set():
            try:
                found = self._endpoints(wait)
            except Unavailable as exc:
                self.stopped_because = "stopped" if stop.is_set() else f"learner gone: {exc}"
                return
            if found.get("ingest") == self.target.get("ingest") and self.client is not None:
                # the same learner: one call's deadline (a weights long-poll cut mid-way) is
                # not the learner gone; retry the same clients until reconnect_s has passed
                if time.monotonic() - down_since >= self.reconnect_s:
                    self.stopped_because = f"learner gone: unreachable for {self.reconnect_s}s"
                    return
                stop.wait(backoff)
                backoff = min(2 * backoff, RETRY_MAX_S)
            else:
                self._connect(found)
            wait = self.reconnect_s
            sent = self.worker.counters.get("sent", 0)
            try:
                self.worker.run(stop, max_generations)  # a total: counted across reconnects
                self.stopped_because = "stopped" if stop.is_set() else "max_generations"
                return
            except Unavailable as exc:
                if stop.is_set():
                    self.stopped_because = "stopped"
                    return
                if down_since is None or self.worker.counters.get("sent", 0) > sent:
                    down_since, backoff = time.monotonic(), RETRY_FIRST_S  # a new outage
                log.warning("worker %s: %s; looking for the learner again", self.worker_id, exc)
        self.stopped_because = self.stopped_because or "stopped"

    def _connect(self, found: dict) -> None:
        """Clients for these endpoints (new ones when the address changed) and the worker."""
        if not found.get("weights"):
            raise ConfigError(
                "the learner serves no weights: start the run with learner.serve_weights=true "
                "(or rollout.weight_sync=grpc), or give --weights HOST:PORT"
            )
        old = self.client
        self.close()
        self.target = dict(found)
        timeout = self.cfg.rollout.rpc_timeout_s
        self.client = TrajectoryClient(
            found["ingest"],
            self.worker_id,
            timeout_s=timeout,
            batch_size=self.cfg.rollout.send_batch_size,
            reconnect_s=self.reconnect_s,
            retain_acked=self.cfg.rollout.retain_acked,  # re-sent to a restarted learner
            **self._secure,
        )
        if old is not None:  # what the old address never acked (or made durable) goes on here
            old.hand_over(self.client)
        self.weights = WeightClient(
            found["weights"], timeout_s=timeout, reconnect_s=self.reconnect_s, **self._secure
        )
        if self.worker is None:
            model, tokenizer, prompts, reward = self._parts
            self.worker = RolloutWorker(
                self.worker_id,
                self.cfg,
                model,
                tokenizer,
                prompts,
                reward,
                self.client,
                weights=self.weights.poll,
                seed=self.seed,
                wait_weights=self.weights.wait_for_version,
            )
        else:  # a new address: the same worker (its counters, model and pending groups)
            self.worker.sink = self.client
            self.worker.weights = self.weights.poll
            self.worker.wait_weights = self.weights.wait_for_version

    def counters(self) -> dict:
        """The worker's counters, its clients' reconnect figures, and why it stopped."""
        out = dict(self.worker.counters) if self.worker is not None else {}
        client = self.client.stats() if self.client is not None else {}
        out.update(
            worker_id=self.worker_id,
            version=self.worker.version if self.worker is not None else -1,
            learner=self.target.get("ingest", ""),
            connected=bool(client.get("connected")),
            reconnects=client.get("reconnects", 0)
            + (self.weights.reconnects if self.weights else 0),
            carried=client.get("carried", 0),
            # held at exit, not yet acked: kept by a send that gave up, or awaiting rewards
            unsent=(self.client.carried if self.client is not None else 0)
            + (sum(len(p.members) for p in self.worker.pending.values()) if self.worker else 0),
            stopped=self.stopped_because,
        )
        return out

    def abort(self) -> None:
        """From another thread (a second signal): break off a wait for credits or acks now."""
        if self.client is not None:
            self.client.abort()

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.weights is not None:
            self.weights.close()
