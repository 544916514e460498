"""Start-up work that overlaps: one job on a thread while another runs on the caller's.

On a 2-core machine a run's set-up is CPU-bound: the driver importing transformers for its
evaluation model and Ray starting its processes each leave a core idle when run one after the
other. `overlap(prepare, connect)` runs them at once; the caller sees either one's error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


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
