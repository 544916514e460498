"""What of a `LearnerService` goes into a resume checkpoint, and how it comes back.

    state   <- learner_state(service)        # between steps, in the training thread
    store.save(state, version, step)         # resume_state.ResumeStore: atomic, torn-proof
    ...process dies, Ray restarts it or `rewardloop train --resume` starts a new one...
    restore_learner(service, store.load_latest(), store.published_version())

A checkpoint holds the model and optimizer tensors, the scheduler, the RNG states (torch,
numpy, python), the version, the step count and the newest step records (learner/step_log.py:
steps are numbered on and `metrics_since` keeps its indices), the throughput counters, the
accounting ledger when the service has one (`ledger.state()`), and the buffer: its held,
untrained trajectories and the ids of the last few versions, so a re-sent trajectory the
checkpoint already covers is a duplicate, never trained twice (an older one is refused as stale
by its version: learner/recent_ids.py). Its size is bounded in the length of the run.

Why it is consistent with what workers were told: the snapshot is taken in the training thread
(no step, take or staleness drop runs meanwhile) and the buffer's part under its lock; every
Ack names the learner's version read after its trajectories were admitted and the newest
durable version. A trajectory acked at a version below the durable one is therefore inside a
checkpoint (held, trained or dropped, and remembered as seen); the workers keep the others
(`TrajectoryClient` retain window) and re-send them to a new incarnation.
"""

from __future__ import annotations

import logging
import time

from rewardloop.learner.resume_state import ResumeStore, rng_state, set_rng_state

log = logging.getLogger(__name__)
FORMAT = 1


def _ledger(service):
    """The accounting ledger (learner/accounting.py), which the buffer holds; None without."""
    return getattr(service.buffer, "ledger", None) or getattr(service, "ledger", None)


def learner_state(service) -> dict:
    """Everything `restore_learner` needs, as CPU objects (torch.save-able)."""
    trainer = service.trainer
    model = {k: v.detach().to("cpu", copy=True) for k, v in trainer.model.state_dict().items()}
    ledger = _ledger(service)
    return {
        "format": FORMAT,
        "model": model,
        "trainer": trainer.trainer_state(),
        "rng": rng_state(),
        "metrics": service.metrics.state(),  # the step count and the newest records
        "counters": service.counters_state(),
        "buffer": service.buffer.state(),
        "ledger": ledger.state() if ledger is not None and hasattr(ledger, "state") else None,
        "incarnation": service.incarnation,
        "saved_at": time.time(),
    }


def restore_learner(service, state: dict, published_version: int = -1) -> int:
    """Load `state` into a freshly built service; returns the version it continues at.

    When workers had been handed a newer version than the checkpoint's (the learner died
    between checkpoints), the restored weights get a fresh number past that mark, so no
    version number names two different sets of weights.
    """
    if state.get("format") != FORMAT:
        raise ValueError(f"resume checkpoint: format {state.get('format')!r}, expected {FORMAT}")
    trainer = service.trainer
    trainer.model.load_state_dict(state["model"])
    trainer.load_trainer_state(state["trainer"])
    set_rng_state(state["rng"])
    service.metrics.load_state(state["metrics"])  # a plain list: an older checkpoint
    service.load_counters(state["counters"])
    service.buffer.load_state(state["buffer"])
    ledger = _ledger(service)
    if ledger is not None and state.get("ledger") is not None and hasattr(ledger, "load_state"):
        ledger.load_state(state["ledger"])
    saved = trainer.version
    if published_version > saved:
        trainer.version = published_version + 1
    log.info(
        "learner restored at step %d, version %d (checkpoint v%d; v%d had been published)",
        len(service.metrics),
        trainer.version,
        saved,
        published_version,
    )
    return trainer.version


class Checkpointer:
    """The schedule: every `every_steps` steps (0 = never on a schedule) and `final()`."""

    def __init__(self, store: ResumeStore, every_steps: int):
        self.store = store
        self.every_steps = every_steps
        self.saves = 0
        self.last: dict = {}  # {"step", "version", "seconds"} of the newest save
        self.durable_version = 0  # the version of the newest complete checkpoint

    def describe(self) -> dict:
        return {"saves": self.saves, "last": self.last, "durable_version": self.durable_version}

    def after_step(self, service) -> None:
        step = len(service.metrics)
        if self.every_steps and step and step % self.every_steps == 0:
            self.save(service)

    def save(self, service) -> None:
        t0 = time.perf_counter()
        version, step = service.version, len(service.metrics)
        self.store.save(learner_state(service), version, step)
        self.durable_version = version
        seconds = time.perf_counter() - t0
        self.saves += 1
        self.last = {"step": step, "version": version, "seconds": round(seconds, 3)}
        log.debug("resume checkpoint at step %d, version %d (%.2fs)", step, version, seconds)
