"""A run that outlives its learner: restart within the run, `train --resume`, SIGTERM.

Three ways a learner comes back, all from `<run_dir>/resume/` (learner/resume_state.py):

- **Ray restarts it** (its process died; `learner.max_restarts`). `LearnerActor.__init__` runs
  again; `boot_learner` sees `was_current_actor_reconstructed`, restores the newest complete
  checkpoint, binds the ingest port it had (if still free; else a new one, which the driver
  records in endpoints.json for external workers and pushes to the in-cluster ones:
  `RolloutPool.follow` -> `RolloutActor.follow`), and the actor serves and trains again on
  its own. The driver's calls go through `LearnerCalls`, which retries a call that met the
  restart until `learner.restart_timeout_s`; `LearnerCalls.observe` notes each new
  incarnation in metrics.jsonl (`"event": "learner_restart"`).
- **`rewardloop train --resume RUN_DIR`**: the run's config.json (plus any overrides) and
  `Run(cfg, resume=True)`: the learner restores the same way; the driver appends to
  metrics.jsonl and carries on with the steps and evaluations already there.
- **SIGTERM to the driver** (`stop_on_sigterm`): the run stops as after its last step (the
  learner writes its final resume checkpoint, summary.json is written); the exit (1) says how
  to resume.

Steps are numbered on: the driver keeps the step records it already logged, and a learner
restored from an older checkpoint retrains the steps after it without logging them again
(metrics.jsonl holds what happened; the learner_restart / resume event says where it went back
to). A fresh run (no --resume) clears an old resume/ so that it never restores another run.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import socket
import threading
import time
from pathlib import Path

import ray

from rewardloop.config import RunConfig, replace
from rewardloop.errors import ConfigError, RewardLoopError
from rewardloop.run_outputs import MetricsLog

log = logging.getLogger(__name__)
RESUME_DIR = "resume"
PORTS_FILE = "ports.json"
RETRY_S = 1.0  # between attempts of a driver call that met a restarting learner


def resume_root(cfg: RunConfig) -> Path:
    return Path(cfg.out) / RESUME_DIR


# ---- in the learner actor ------------------------------------------------------------------


def boot_learner(cfg: RunConfig, publish, device: str, resume: bool):
    """(service, model path, boot record) for LearnerActor.__init__ (see the module doc)."""
    from rewardloop.learner.service import LearnerService
    from rewardloop.modeling import load_policy  # transformers: not at import (run.py)

    restarted = ray.get_runtime_context().was_current_actor_reconstructed
    root = resume_root(cfg)
    if restarted and cfg.learner.port == 0:
        port = _read_json(root / PORTS_FILE).get("ingest", 0)
        if port and _port_free(cfg.learner.host, port):
            cfg = replace(cfg, learner={"port": port})  # workers reconnect to the same address
    model, tokenizer, model_path = load_policy(cfg)
    service = LearnerService(
        cfg,
        model,
        tokenizer,
        publish=publish,
        device=device,
        resume_dir=str(root),
        audit_dir=str(Path(cfg.out) / "audit"),  # the accounting's audit (learner/accounting.py)
    )
    restored = service.restore_latest() if (restarted or resume) else None
    if resume and not restarted and restored is None:
        raise ConfigError(f"--resume: no complete resume checkpoint in {root}")
    if restored is None:
        # The checkpoint every later one is relative to (a learner that dies before its first
        # scheduled one comes back from here, not from nothing).
        service.checkpoints.save(service)
    boot = {"restarted": restarted, "resumed": bool(resume), "restored": restored or {}}
    _checkpoint_on_sigterm(service)
    return service, model_path, boot


def _checkpoint_on_sigterm(service) -> None:
    """SIGTERM to the learner process: stop as at the end of a run (training, then the servers,
    so the port is free for a restarted learner and workers' streams end at once; the final
    resume checkpoint between), then Ray's own handler, which ends the process. Actor
    constructors run on the main thread, where signal handlers go."""
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum, frame) -> None:
        log.warning("learner: SIGTERM; writing a resume checkpoint before exiting")
        try:
            service.stop()
        except Exception:  # noqa: BLE001 - exit anyway; the previous checkpoint stands
            log.exception("learner: the SIGTERM checkpoint failed")
        if callable(previous):
            previous(signum, frame)
        else:
            raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def record_ports(service) -> None:
    """The ports a restarted learner should bind again (`<run_dir>/resume/ports.json`)."""
    if service.checkpoints is None:
        return
    root = service.checkpoints.store.root
    root.mkdir(parents=True, exist_ok=True)
    (root / PORTS_FILE).write_text(json.dumps({"ingest": service.ingest.port}))


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


# ---- in the driver -------------------------------------------------------------------------


class LearnerCalls:
    """The driver's calls to the learner actor, retried through a Ray restart of it."""

    def __init__(self, learner, cfg: RunConfig):
        self.learner = learner
        self.restart_timeout_s = cfg.learner.restart_timeout_s if cfg.learner.max_restarts else 0
        self.incarnation = ""
        self.restarts: list[dict] = []

    def __call__(self, method: str, *args, timeout_s: float = 60.0):
        deadline = time.monotonic() + self.restart_timeout_s
        while True:
            try:
                return ray.get(getattr(self.learner, method).remote(*args), timeout=timeout_s)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as exc:
                if time.monotonic() >= deadline:
                    raise RewardLoopError(
                        f"learner: {method} failed ({type(exc).__name__}); no answer within "
                        f"learner.restart_timeout_s={self.restart_timeout_s:.0f}s: {exc}"
                    ) from exc
                log.warning("learner: %s met a restart (%s); retrying", method, type(exc).__name__)
                threading.Event().wait(RETRY_S)  # a back-off between retries, not a sync point

    def observe(self, status: dict, metrics_log: MetricsLog | None) -> dict | None:
        """Note a new learner incarnation (from a status answer); returns its record if new."""
        now = status.get("incarnation", "")
        if not now or now == self.incarnation:
            return None
        first, self.incarnation = not self.incarnation, now
        if first:
            return None
        info = self("incarnation")
        record = {
            "event": "learner_restart",
            "time": time.time(),
            "incarnation": now,
            "pid": info["pid"],
            "resumed_step": info["restored"].get("step"),
            "resumed_version": info["restored"].get("version"),
        }
        self.restarts.append(record)
        if metrics_log is not None:
            metrics_log.write(record)
        log.warning(
            "learner restarted (pid %s) from step %s, version %s",
            record["pid"],
            record["resumed_step"],
            record["resumed_version"],
        )
        return record


def prepare_dir(out: Path, resume: bool) -> None:
    """A fresh run never restores another run's state: clear `<out>/resume` unless resuming."""
    root = Path(out) / RESUME_DIR
    if resume:
        if not (Path(out) / "config.json").exists():
            raise ConfigError(f"--resume: {out} has no config.json (not a run directory)")
    elif root.exists():
        shutil.rmtree(root)


def resume_args(args) -> None:
    """`train --resume DIR`: the run's own config.json, its directory as --out."""
    if args.config:
        raise ConfigError("--resume: give no --config (the run's config.json is used)")
    run_dir = Path(args.resume)
    if not (run_dir / "config.json").exists():
        raise ConfigError(f"--resume: {run_dir / 'config.json'} not found")
    args.config = str(run_dir / "config.json")
    args.out = str(run_dir.resolve())


_SIGTERM = threading.Event()
_PREVIOUS: list = []


def sigterm_received() -> bool:
    """True once `train` got SIGTERM (the driver's watch loop then ends the run)."""
    return _SIGTERM.is_set()


def stop_on_sigterm() -> None:
    """SIGTERM ends the run as `rewardloop stop` does: workers stop, the learner writes its final
    resume checkpoint, the checkpoint and summary.json are written, and the error says how to go
    on. Only a flag is set here (raising inside Ray's or gRPC's C code can abort the process);
    a second SIGTERM stops at once, through the same clean-up. Installed after `ray.init`,
    which puts its own handler in place (one that kills the driver outright); main thread only."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, frame) -> None:
        if _SIGTERM.is_set():
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            raise RewardLoopError("stopped by a second SIGTERM")
        _SIGTERM.set()

    _PREVIOUS.append(signal.signal(signal.SIGTERM, handler))


def restore_sigterm() -> None:
    """Put back the handler `stop_on_sigterm` replaced (when the run closes)."""
    if _PREVIOUS and threading.current_thread() is threading.main_thread():
        previous = _PREVIOUS.pop()  # None: a handler not set from Python (Ray's own)
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
    _SIGTERM.clear()
