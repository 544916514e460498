"""The learner's live Prometheus metrics: read from `LearnerService` at each scrape.

A custom collector turns the service's own figures (the last step record, the buffer, ingest
and weight-server counters) into `rewardloop_*` samples when Prometheus scrapes, so nothing
is counted twice and the hot path gains no work; the weight-sync histogram is observed once per
step (`on_step`). The driver pushes what only it knows (the eval metric, the worker count)
through `set_driver` (the Ray `LearnerActor.set_driver_metrics`). Names: README, Live metrics.
"""

from __future__ import annotations

import math
import threading

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from rewardloop.metrics import MetricsServer

SYNC_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class LearnerMetrics:
    """The registry, the collector over `service` and (when the port is not -1) its server."""

    def __init__(self, service, host: str = "127.0.0.1", port: int = 0):
        self.service = service
        self.registry = CollectorRegistry()
        self.weight_sync = Histogram(
            "rewardloop_weight_sync_seconds",
            "Seconds to publish one version to workers (object store and/or WeightService).",
            buckets=SYNC_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_Collector(self))
        self.server = MetricsServer(self.registry, host, port, "learner.metrics_port")
        self._lock = threading.Lock()
        self._driver: dict = {}

    def start(self) -> str:
        """Serve /metrics; returns its URL ("" when learner.metrics_port is -1)."""
        return self.server.start()

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        self.server.stop()

    def on_step(self, record: dict) -> None:
        if not record.get("skipped"):
            self.weight_sync.observe(record.get("publish_s", 0.0))

    def set_driver(self, eval_metric: str = "", eval_value: float | None = None, workers=None):
        """Figures the driver owns: the latest eval metric (name, value) and the worker count."""
        with self._lock:
            if eval_value is not None:
                self._driver["eval"] = (eval_metric or "metric", float(eval_value))
            if workers is not None:
                self._driver["workers"] = int(workers)

    def driver(self) -> dict:
        with self._lock:
            return dict(self._driver)


def _counter(name: str, doc: str, value: float, labels: dict | None = None):
    fam = CounterMetricFamily(name, doc, labels=list(labels or {}))
    fam.add_metric(list((labels or {}).values()), value)
    return fam


def _gauge(name: str, doc: str, value: float):
    return GaugeMetricFamily(name, doc, value=value)


class _Collector:
    def __init__(self, owner: LearnerMetrics):
        self.owner = owner

    def describe(self):
        return []  # unchecked: the names depend on what the service has seen

    def collect(self):
        svc = self.owner.service
        status = svc.status()
        last = svc.metrics[-1] if svc.metrics else {}
        buf, ingest, weights = status["buffer"], status["ingest"], status["weights"]
        yield _gauge("rewardloop_learner_version", "Newest published policy version.", svc.version)
        yield _counter("rewardloop_learner_steps", "Optimizer steps taken.", status["steps"])
        yield _counter(
            "rewardloop_trajectories_trained",
            "Trajectories the learner trained on.",
            last.get("trajectories", 0),
        )
        yield _counter(
            "rewardloop_tokens_trained", "Completion tokens trained on.", last.get("tokens", 0)
        )
        yield _gauge(
            "rewardloop_trajectories_per_second",
            "Trajectories trained per second since training began.",
            last.get("trajectories_per_s", 0.0),
        )
        yield _gauge(
            "rewardloop_tokens_per_second",
            "Completion tokens trained per second since training began.",
            last.get("tokens_per_s", 0.0),
        )
        yield _gauge(
            "rewardloop_reward_mean",
            "Mean reward of the last step's trajectories.",
            last.get("reward_mean", math.nan),
        )
        yield _gauge(
            "rewardloop_policy_lag_mean",
            "Mean versions the last step's trajectories were behind the learner.",
            last.get("lag_mean", math.nan),
        )
        yield _gauge(
            "rewardloop_policy_lag_max",
            "Most versions a trajectory of the last step was behind the learner.",
            last.get("lag_max", math.nan),
        )
        yield _gauge(
            "rewardloop_learner_wait_fraction",
            "Fraction of training time the learner waited for data.",
            last.get("wait_fraction", 0.0),
        )
        yield _counter(
            "rewardloop_trajectories_dropped_stale",
            "Trajectories dropped for being older than learner.max_staleness.",
            buf.get("dropped_stale", 0),
        )
        yield _gauge("rewardloop_buffer_trajectories", "Trajectories buffered.", buf.get("size", 0))
        yield _gauge(
            "rewardloop_buffer_capacity", "Trajectories the buffer holds.", buf.get("capacity", 0)
        )
        ingested = CounterMetricFamily(
            "rewardloop_ingest_trajectories",
            "Trajectories ingest answered, by outcome (accepted or duplicate).",
            labels=["outcome"],
        )
        for outcome in ("accepted", "duplicate"):
            ingested.add_metric([outcome], ingest.get(outcome, 0))
        yield ingested
        rejected = CounterMetricFamily(
            "rewardloop_ingest_rejected",
            "Trajectories ingest rejected (the buffer's verdicts included), by reason: the field "
            "at fault.",
            labels=["reason"],
        )
        for reason, n in sorted(ingest.get("rejected", {}).items()):
            rejected.add_metric([reason], n)
        yield rejected
        yield _gauge(
            "rewardloop_ingest_streams_open",
            "Worker streams open.",
            ingest.get("streams_open", 0),
        )
        unauth = CounterMetricFamily(
            "rewardloop_unauthenticated",
            "Calls refused for a missing or wrong learner.token, by server.",
            labels=["server"],
        )
        busy = CounterMetricFamily(
            "rewardloop_streams_refused_busy",
            "Calls refused because learner.max_streams were open, by server.",
            labels=["server"],
        )
        unauth.add_metric(["ingest"], ingest.get("unauthenticated", 0))
        busy.add_metric(["ingest"], ingest.get("streams_refused_busy", 0))
        if weights:
            unauth.add_metric(["weights"], weights.get("unauthenticated", 0))
            busy.add_metric(["weights"], weights.get("refused_busy", 0))
        yield unauth
        yield busy
        driver = self.owner.driver()
        if "eval" in driver:
            name, value = driver["eval"]
            fam = GaugeMetricFamily(
                "rewardloop_eval_metric",
                "The run's latest evaluation (eval metric named in the label).",
                labels=["metric"],
            )
            fam.add_metric([name], value)
            yield fam
        if "workers" in driver:
            yield _gauge("rewardloop_rollout_workers", "Rollout workers.", driver["workers"])
