"""The feedback side of a run: a gateway started with it, and simulated raters if asked for.

With `feedback.autostart`, `train` does not need a gateway running elsewhere: after Ray is up
the driver calls `start_feedback(cfg)`, which starts `FeedbackGateway` as a Ray actor
(`num_cpus=0`, pinned to the driver's node so its 127.0.0.1 address is reachable), points
`reward.url` at its gRPC face (what the rollout workers publish to and collect from) and, with
`feedback.simulated_raters > 0`, starts `SimulatedRaters` in the driver process, rating through
its HTTP API after `feedback.rating_delay_s` seconds on average. `stop()` ends both and
returns what the run needs to report: the gateway's counters, the ratings per second it
sustained, the raters' publish-to-rating delay.

    side = start_feedback(cfg)
    cfg = side.cfg                 # reward.url filled in
    ...
    summary["feedback"] = side.stop()
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from rewardloop.config import RunConfig, replace, to_dict

log = logging.getLogger(__name__)
CALL_TIMEOUT_S = 60.0


@dataclass
class FeedbackSide:
    """What `start_feedback` started; `stop()` is safe to call once anything has started."""

    cfg: RunConfig
    gateway: object | None = None
    raters: object | None = None
    addresses: dict = field(default_factory=dict)
    started_at: float = field(default_factory=time.monotonic)
    _final: dict | None = None

    def stats(self) -> dict:
        """Gateway counters, ratings/s over the gateway's life so far, and the raters' own view."""
        if self.gateway is None:
            return {}
        seconds = time.monotonic() - self.started_at
        gateway = ray.get(self.gateway.stats.remote(), timeout=CALL_TIMEOUT_S)
        out = {
            "addresses": self.addresses,
            "seconds": round(seconds, 2),
            "gateway": gateway,
            "ratings_per_s": round(gateway.get("rated", 0) / max(seconds, 1e-9), 2),
        }
        if self.raters is not None:
            out["raters"] = self.raters.stats()
            out["mean_delay_s"] = out["raters"]["mean_delay_s"]
        return out

    def stop(self) -> dict:
        """Stop the raters, then the gateway; returns the final `stats()` ({} if none started)."""
        if self._final is not None or self.gateway is None:
            return self._final or {}
        if self.raters is not None:
            self.raters.stop()
        try:
            self._final = self.stats()
        except Exception as exc:  # noqa: BLE001 - a report must not stop the shutdown
            log.warning("feedback gateway stats unavailable: %s", exc)
            self._final = {"error": str(exc)}
        try:
            ray.get(self.gateway.stop.remote(), timeout=CALL_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001
            log.warning("feedback gateway did not stop cleanly: %s", exc)
        finally:
            ray.kill(self.gateway)
        return self._final


def start_feedback(cfg: RunConfig) -> FeedbackSide:
    """Start what `cfg.feedback` asks for (nothing unless autostart); call after `connect()`."""
    if not cfg.feedback.autostart:
        return FeedbackSide(cfg)
    from rewardloop.feedback.gateway.core import resolve_token
    from rewardloop.feedback.gateway.server import FeedbackGateway

    fb = cfg.feedback
    store = _store_path(fb.store_path, cfg.out)
    token = resolve_token(fb.token)
    # the token travels resolved to the actor, whose environment may lack an env: variable
    actor_cfg = {**to_dict(fb), "store_path": store, "token": token}
    here = ray.get_runtime_context().get_node_id()
    gateway = (
        ray.remote(num_cpus=0)(FeedbackGateway)
        .options(scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False))
        .remote(actor_cfg)
    )
    side = FeedbackSide(cfg, gateway=gateway)
    try:
        side.addresses = {
            k: _advertised(v)
            for k, v in ray.get(gateway.start.remote(), timeout=CALL_TIMEOUT_S).items()
        }
        reward = {"url": side.addresses["grpc_target"]}
        if fb.tls_cert and not cfg.reward.ca_cert:
            reward["ca_cert"] = fb.tls_cert  # a self-signed gateway certificate is its own CA
        if cfg.reward.url and cfg.reward.url != reward["url"]:
            log.warning(
                "feedback.autostart: reward.url %s replaced by %s", cfg.reward.url, reward["url"]
            )
        side.cfg = replace(cfg, reward=reward, feedback={"store_path": store})
        log.info(
            "feedback gateway: %s (rating page %s)",
            side.addresses["grpc_target"],
            side.addresses["rate_url"],
        )
        if fb.simulated_raters:
            side.raters = _start_raters(side.cfg, side.addresses["http_url"], token)
    except BaseException:
        side.stop()
        raise
    return side


def _start_raters(cfg: RunConfig, http_url: str, token: str):
    from rewardloop.feedback.sim.helpdesk_users import SimulatedRaters
    from rewardloop.feedback.sources.function_source import import_callable
    from rewardloop.tasks import get_task

    fb = cfg.feedback
    user = import_callable(get_task(cfg.task).raters, key="feedback.simulated_raters")
    raters = SimulatedRaters.over_http(
        http_url,
        token,
        ca_cert=fb.tls_cert,
        user=user(cfg.reward.like_prob, cfg.reward.dislike_prob),
        n_raters=fb.simulated_raters,
        mean_delay_s=fb.rating_delay_s,
        seed=cfg.seed,
    )
    return raters.start()


def _store_path(path: str, out: str) -> str:
    """A relative store path lands in the run directory; absolute, ~ and :memory: stay."""
    if path == ":memory:":
        return path
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (Path(out) / p).resolve())


def _advertised(url: str) -> str:
    """A wildcard bind address (0.0.0.0) in a URL becomes this node's IP, so others can connect."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host not in ("0.0.0.0", "::", "[::]"):
        return url
    ip = ray.util.get_node_ip_address()
    return urlunsplit(parts._replace(netloc=f"{ip}:{parts.port}"))
