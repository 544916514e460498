"""Start-up work that overlaps: one job on a thread while another runs on the caller's.

On a 2-core machine a run's set-up is CPU-bound: the driver importing transformers for its
evaluation model and Ray starting its processes each leave a core idle when run one after the
other. `overlap(prepare, connect)` runs them at once; the caller sees either one's error.

`lean_local_ray()`: what an embedded Ray does that nobody reads, turned off before it starts.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

# Ray's own bookkeeping an embedded Ray started with include_dashboard=False has no reader for:
# task events (every actor call reported to the GCS, for the dashboard's task views and
# `ray list tasks`) and its metrics (recorded by every Ray process, exported through the
# dashboard agent). Off, Ray's daemons, the driver and the actors spend less CPU: measured
# 11.7 -> 9.8 CPU s over 1,800 actor calls and 600 puts (dashboard agent 0.84 -> 0.28, GCS
# 0.64 -> 0.32, raylet 1.82 -> 1.53; bench/README.md `e2e`). rewardloop's own metrics
# (rewardloop/metrics.py) are not Ray's. A value already in the environment wins.
LEAN_RAY_ENV = {"RAY_task_events_report_interval_ms": "0", "RAY_enable_metrics_collection": "0"}


def lean_local_ray(address: str) -> None:
    """Before `ray.init` starts a local Ray (no `address`): set LEAN_RAY_ENV's defaults, which
    the processes it starts inherit. Attaching to a cluster changes nothing."""
    if address or os.environ.get("RAY_ADDRESS"):
        return
    for name, value in LEAN_RAY_ENV.items():
        os.environ.setdefault(name, value)


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
