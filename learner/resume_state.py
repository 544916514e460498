"""Resume checkpoints: everything a learner needs to go on where it stopped, written atomically.

The run's final `checkpoint/` stays a plain Hugging Face directory; this is the other kind, in
`<run_dir>/resume/`, for `rewardloop train --resume` and for a learner that Ray restarts inside
the same run. One checkpoint is one directory `v<version>-s<step>/` holding `state.pt` (model
and optimizer tensors, scheduler, RNG states, the step count and newest step records,
accounting, the buffer's held trajectories and recent seen ids: bounded, see durability.py)
and, written last, `COMPLETE` (JSON: the step, the version and the byte size of `state.pt`).
The directory is built under a dot-prefixed temp name, fsynced and renamed into place, so a
crash mid-write leaves either nothing or a directory that `latest()` skips: no `COMPLETE`,
or a `state.pt` whose size is not the one `COMPLETE` names. The newest `keep` complete
checkpoints stay; older ones and torn ones are removed on the next save.

`published.json` beside them is the high-water mark of the versions ever handed to workers
(rewritten before each publish). A learner restored from an older checkpoint than the newest
version it had published numbers its weights past that mark, so a version number never names
two different sets of weights (workers swap to the restored weights, and the data they made
with the lost versions is merely stale, never "from the future").
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)
STATE = "state.pt"
MARKER = "COMPLETE"
PUBLISHED = "published.json"
_NAME = re.compile(r"^v(\d+)-s(\d+)$")


def rng_state() -> dict:
    """Every RNG the learner draws from: torch (and CUDA when present), numpy, python."""
    out = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ResumeStore:
    """The resume checkpoints of one run directory (`<run_dir>/resume`)."""

    def __init__(self, root: str | Path, keep: int = 2):
        if keep < 1:
            raise ValueError(f"keep: must be >= 1, got {keep}")
        self.root = Path(root)
        self.keep = keep

    # ---- writing -----------------------------------------------------------------------

    def save(self, state: dict, version: int, step: int) -> Path:
        """Write `state` as the checkpoint of (version, step); returns its directory."""
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / f"v{version:08d}-s{step:08d}"
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=self.root))
        try:
            file = tmp / STATE
            with file.open("wb") as f:
                torch.save(state, f)
                f.flush()
                os.fsync(f.fileno())
            marker = {"version": version, "step": step, "bytes": file.stat().st_size}
            with (tmp / MARKER).open("w") as f:
                json.dump(marker, f)
                f.flush()
                os.fsync(f.fileno())
            _fsync_dir(tmp)
            if final.exists():  # the same (version, step) saved again (e.g. end after schedule)
                shutil.rmtree(final)
            os.replace(tmp, final)
            _fsync_dir(self.root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._prune(final)
        return final

    def _prune(self, newest: Path) -> None:
        """Keep the newest `keep` complete checkpoints; remove older, torn and temp dirs."""
        complete = [d for d in self._candidates() if self._complete(d) is not None]
        keep = {d.name for d in complete[: self.keep]} | {newest.name}
        for d in self.root.iterdir():
            if d.is_dir() and d.name not in keep:
                shutil.rmtree(d, ignore_errors=True)

    def publish_mark(self, version: int) -> None:
        """Record that `version` is about to be handed to workers (the high-water mark)."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{PUBLISHED}.tmp"
        tmp.write_text(json.dumps({"version": version}))
        os.replace(tmp, self.root / PUBLISHED)

    # ---- reading -----------------------------------------------------------------------

    def published_version(self) -> int:
        """The newest version ever handed to workers, -1 if none was recorded."""
        try:
            return int(json.loads((self.root / PUBLISHED).read_text())["version"])
        except (OSError, ValueError, KeyError, TypeError):
            return -1

    def _candidates(self) -> list[Path]:
        """Checkpoint directories, newest (step, then version) first."""
        if not self.root.is_dir():
            return []
        found = []
        for d in self.root.iterdir():
            m = _NAME.match(d.name)
            if m and d.is_dir():
                found.append(((int(m.group(2)), int(m.group(1))), d))
        return [d for _, d in sorted(found, reverse=True)]

    @staticmethod
    def _complete(d: Path) -> dict | None:
        """The marker of a complete checkpoint, or None for a torn one."""
        try:
            marker = json.loads((d / MARKER).read_text())
            if (d / STATE).stat().st_size != int(marker["bytes"]):
                return None
            return marker
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def latest(self) -> tuple[Path, dict] | None:
        """(directory, marker) of the newest complete checkpoint; torn ones are skipped."""
        for d in self._candidates():
            marker = self._complete(d)
            if marker is not None:
                return d, marker
            log.warning("resume: skipping torn checkpoint %s (no or wrong %s)", d, MARKER)
        return None

    def load_latest(self) -> dict | None:
        """The state of the newest complete checkpoint (None when there is none)."""
        found = self.latest()
        if found is None:
            return None
        d, marker = found
        state = torch.load(d / STATE, map_location="cpu", weights_only=False)
        state["checkpoint_dir"] = str(d)
        log.info("resume: loaded %s (step %d, version %d)", d, marker["step"], marker["version"])
        return state
