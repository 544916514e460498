"""Start-up work that overlaps: one job on a thread while another runs on the caller's.

On a 2-core machine a run's set-up is CPU-bound: the driver importing transformers for its
evaluation model and Ray starting its processes each leave a core idle when run one after the
other. `overlap(prepare, connect)` runs them at once; the caller sees either one's error.

`lean_local_ray()`: what an embedded Ray does that nobody reads, turned off before it starts;
`lean_head()`: the two head processes an embedded Ray starts for nobody, not started.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)

# Ray's own bookkeeping an embedded Ray started with include_dashboard=False has no reader for:
# task events (every actor call reported to the GCS, for the dashboard's task views and
# `ray list tasks`) and its metrics (recorded by every Ray process, exported through the
# dashboard agent). Off, Ray's daemons, the driver and the actors spend less CPU: measured
# 11.7 -> 9.8 CPU s over 1,800 actor calls and 600 puts (dashboard agent 0.84 -> 0.28, GCS
# 0.64 -> 0.32, raylet 1.82 -> 1.53; bench/README.md `e2e`). rewardloop's own metrics
# (rewardloop/metrics.py) are not Ray's. A value already in the environment wins.
# The log monitor forwards the actors' output to the driver (log_to_driver): kept, but it globs
# Ray's log directory for new files every 0.1 s while it has fewer than this many; at 0 it does
# so every 0.5 s (Ray's LOG_NAME_UPDATE_INTERVAL_S), a new actor's log found that much later.
# Ray also prestarts a Python worker per CPU when the first driver connects, for tasks; a run
# has none, and its actors start in fresh processes (checked in the session logs: the two
# prestarted ones stayed idle until Ray reaped them), so that start-up CPU went to nobody.
LEAN_RAY_ENV = {
    "RAY_task_events_report_interval_ms": "0",
    "RAY_enable_metrics_collection": "0",
    "RAY_LOG_MONITOR_MANY_FILES_THRESHOLD": "0",
    "RAY_prestart_worker_first_driver": "0",
}
# Head processes an embedded `ray.init(include_dashboard=False)` starts that serve nothing here:
# the autoscaler monitor (one fixed local node never scales; placement groups are the GCS's) and
# the dashboard head (started even so, to load only UsageStatsHead; usage stats are off, and
# ray.init waits until it has written its URL). Measured per run: ~1.7 CPU s of set-up and
# ~0.2 s of training, and the wait (bench/README.md `e2e`). The Node methods that start them
# (Ray 2.60's private API) are no-ops while `lean_head()` holds; absent ones are left alone.
# `ray start --head` with `cluster.address` gets a full head.
LEAN_HEAD_SKIPS = ("start_monitor", "start_api_server")


def lean_local_ray(address: str) -> None:
    """Before `ray.init` starts a local Ray (no `address`): set LEAN_RAY_ENV's defaults, which
    the processes it starts inherit. Attaching to a cluster changes nothing."""
    if address or os.environ.get("RAY_ADDRESS"):
        return
    for name, value in LEAN_RAY_ENV.items():
        os.environ.setdefault(name, value)


@contextlib.contextmanager
def lean_head() -> Iterator[None]:
    """Around the `ray.init` that starts an embedded Ray: its head starts without the processes
    in LEAN_HEAD_SKIPS (webui_url stays None, as in a minimal Ray install)."""
    try:
        from ray._private.node import Node
    except ImportError:  # another Ray layout: a full head
        yield
        return
    saved = {name: getattr(Node, name) for name in LEAN_HEAD_SKIPS if hasattr(Node, name)}
    if len(saved) < len(LEAN_HEAD_SKIPS):
        log.debug("lean_head: Ray's Node lacks %s; a full head", LEAN_HEAD_SKIPS)
        saved = {}
    for name in saved:
        setattr(Node, name, _skipped)
    try:
        yield
    finally:
        for name, method in saved.items():
            setattr(Node, name, method)


def _skipped(node, *args, **kwargs) -> None:
    node._webui_url = None  # what Node.start_api_server would have set


def overlap(background: Callable[[], None], foreground: Callable[[], None]) -> None:
    """Run `background` on a thread and `foreground` here (it may install signal handlers,
    which only the main thread can); wait for both; raise the first error, foreground's first."""
    failure: list[BaseException] = []

    def work() -> None:
        try:
            background()
        except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=work, name="startup-overlap", daemon=True)
    thread.start()
    try:
        foreground()
    finally:
        thread.join()
    if failure:
        raise failure[0]
