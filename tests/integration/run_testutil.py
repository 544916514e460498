"""Driving a real `Run` to its end while a thread injects a fault, for the fault tests."""

from __future__ import annotations

import threading
from collections.abc import Callable


def execute_with_fault(
    run, thread: threading.Thread, done: threading.Event, cleanup: Callable[[], None] | None = None
) -> dict:
    """Prepare, launch, start `thread`, watch to the end and return the summary; whatever
    happens, `done` is set (the thread's signal to give up), the run stopped and closed."""
    try:
        run.prepare()
        run.connect()
        run.launch()
        thread.start()
        run.watch()
        run.stop()
        run.save()
        return run.finish()
    finally:
        done.set()
        run.stop()
        run.close()
        if cleanup is not None:
            cleanup()
