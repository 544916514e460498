"""The default-model build cache: one directory per recipe, built once under a lock, atomically.

The directory is keyed by a hash of everything that changes the result, so a changed setting
builds a new model and an unchanged one is reused. A process takes an fcntl lock next to the
entry, builds into a temporary directory and renames it into place, so a reader never sees half
a model and two processes never build the same one twice. `INFO_FILE` marks a finished build.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rewardloop.errors import Unavailable

INFO_FILE = "build_info.json"


def log(message: str) -> None:
    print(f"[rewardloop] {message}", file=sys.stderr, flush=True)


def keyed_dir(cache_dir: str, prefix: str, key: dict) -> Path:
    """`<cache_dir>/<prefix>-<hash of key>`: one directory per distinct build recipe."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir).expanduser() / f"{prefix}-{digest}"


def ensure_built(final: Path, build: Callable[[Path], object], timeout: float) -> Path:
    """`final`, first built by `build(tmp_dir)` if it has no INFO_FILE yet: once, under an fcntl
    lock next to it, into a temporary directory renamed into place."""
    if (final / INFO_FILE).exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f"{final.name}.lock", "w") as lock:
        _acquire(lock, timeout, final)
        try:
            if (final / INFO_FILE).exists():  # another process built it while we waited
                return final
            if final.exists():  # debris of manual edits: never a finished build
                shutil.rmtree(final)
            tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
            try:
                build(tmp)
                tmp.rename(final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return final


def _acquire(lock, timeout_s: float, final: Path) -> None:
    deadline = time.monotonic() + timeout_s
    announced = False
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"model.cache_dir: another process has been building {final} for over "
                    f"{timeout_s:.0f}s; remove its .lock file if that process is gone"
                ) from None
            if not announced:
                log(f"waiting for another process to finish building {final}")
                announced = True
            time.sleep(0.2)  # polling a file lock held by another process: no event to wait on
