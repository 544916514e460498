"""A call repeated every `period_s` seconds on a daemon thread until `stop()`.

The feedback gateway's janitor (expiry, retention) and the serve loop's ticks share it. A
round that raises is logged on the caller's logger and counted in `errors`; the next round
tries again, so one bad round never ends the thread. The first call comes one period after
`start()`, and `stop()` wakes a sleeping thread at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable


class Periodic:
    def __init__(
        self,
        fn: Callable[[], object],
        period_s: float,
        *,
        what: str,
        log: logging.Logger,
        name: str | None = None,
    ):
        self.fn, self.period_s = fn, period_s
        self.what, self.log, self.name = what, log, name
        self.errors = 0
        """Rounds that raised."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Periodic:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self.fn()
            except Exception:  # noqa: BLE001 - logged and counted; the next round tries again
                self.errors += 1
                self.log.exception("%s failed", self.what)

    def stop(self, timeout_s: float) -> None:
        """Ask the thread to end and wait for it at most `timeout_s` (a round in flight ends first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
