"""The feedback gateway's live Prometheus metrics, on a `/metrics` server of its own.

The store's durable counters (published, rated, expired, ...), the pending depth and the
request errors by kind are read from `FeedbackCore.stats()` at each scrape, so they survive a
gateway restart exactly as the store does; the feedback latency (publish -> rating) is a
histogram observed on each newly stored rating, since this process started. The server binds
`feedback.metrics_host` (loopback by default) on `feedback.metrics_port` (0 = free, -1 = off),
apart from the gateway's token-guarded ports: it serves counts only. Names: README, Live
metrics.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from rewardloop.metrics import MetricsServer

LATENCY_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600, 7 * 24 * 3600)
ERROR_KINDS = ("unauthenticated", "too_large", "not_found", "invalid", "error", "internal")
STORE_COUNTERS = (  # store counter -> (metric, help)
    ("published", "rewardloop_feedback_published", "Items published for rating."),
    ("blocked", "rewardloop_feedback_blocked", "Items the content check blocked."),
    ("rated", "rewardloop_feedback_rated", "Items rated (ratings stored)."),
    ("duplicates", "rewardloop_feedback_duplicate_ratings", "Ratings seen before (idempotent)."),
    ("late", "rewardloop_feedback_late_ratings", "Ratings for items no longer pending."),
)


class GatewayMetrics:
    """Registry, collector over `core`, latency histogram and (unless port -1) the server."""

    def __init__(self, core, host: str = "127.0.0.1", port: int = 0):
        self.core = core
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "rewardloop_feedback_latency_seconds",
            "Seconds from an item's publication to its rating.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_Collector(core))
        core.on_rated = self.latency.observe
        self.server = MetricsServer(self.registry, host, port, "feedback.metrics_port")

    def start(self) -> str:
        """Serve /metrics; returns its URL ("" when feedback.metrics_port is -1)."""
        return self.server.start()

    def stop(self) -> None:
        self.server.stop()


class _Collector:
    def __init__(self, core):
        self.core = core

    def describe(self):
        return []

    def collect(self):
        stats = self.core.stats()
        for key, name, doc in STORE_COUNTERS:
            fam = CounterMetricFamily(name, doc)
            fam.add_metric([], stats.get(key, 0))
            yield fam
        expired = CounterMetricFamily(
            "rewardloop_feedback_expired",
            "Items that expired unrated, by feedback.expiry_outcome (drop or neutral).",
            labels=["outcome"],
        )
        for outcome in ("drop", "neutral"):
            expired.add_metric([outcome], stats.get(f"expired_{outcome}", 0))
        yield expired
        yield GaugeMetricFamily(
            "rewardloop_feedback_pending", "Items waiting for a rating.", stats.get("pending", 0)
        )
        errors = stats.get("request_errors", {})
        fam = CounterMetricFamily(
            "rewardloop_feedback_request_errors",
            "Requests refused or failed, by kind (unauthenticated, invalid, too_large, ...).",
            labels=["kind"],
        )
        for kind in ERROR_KINDS:
            fam.add_metric([kind], errors.get(kind, 0))
        yield fam
        unauth = CounterMetricFamily(
            "rewardloop_feedback_unauthenticated",
            "Calls refused for a missing or wrong feedback.token.",
        )
        unauth.add_metric([], errors.get("unauthenticated", 0))
        yield unauth
