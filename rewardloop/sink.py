"""What a rollout worker sends finished trajectories to: the `TrajectorySink` protocol, its two
results (`SendResult`, `CreditWait`) and `ListSink`, an in-memory sink for tests and benchmarks.

Beside `Scorer` (scoring.py): the worker sees the learner only through this protocol, so
actors/ needs no transport to be tested. `actors.trajectory_client.TrajectoryClient` implements
it over `TrajectoryService.Stream`, where the learner rations what a worker may send with
credits (back-pressure); a sink that takes everything at once says so with `credits = None`,
and the worker then bounds staleness by counting generations instead.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

from rewardloop.trajectory import Trajectory

__all__ = ["CreditWait", "ListSink", "SendResult", "TrajectorySink"]


@dataclass
class SendResult:
    """Outcome of one `send()`: ids by verdict, with the learner's reason for each rejection.

    After a reconnect, trajectories the learner had already admitted come back as duplicates.
    `answers` says who answered: one `(incarnation, learner_version, durable_version, ids)` per
    Ack (trajectory.proto), so a spool keeps each id until that learner process has it in a
    resume checkpoint (actors/spool.py); a sink without learner processes leaves it empty.
    """

    accepted: list[str] = field(default_factory=list)
    duplicate: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    learner_version: int = -1
    answers: list[tuple[str, int, int, list[str]]] = field(default_factory=list)

    @property
    def n_accepted(self) -> int:
        return len(self.accepted)

    @property
    def n_duplicate(self) -> int:
        return len(self.duplicate)

    @property
    def n_rejected(self) -> int:
        return len(self.rejected)


class CreditWait(enum.Enum):
    """How a `wait_for_credits` call ended. Compare with `is`; it has no truth value of its own."""

    GRANTED = "granted"
    """The sink may now take the trajectories asked for (or its whole share of the buffer)."""
    TIMED_OUT = "timed out"
    """No credits within the timeout; the learner is still there (its buffer is full)."""
    ENDED = "ended"
    """The stream ended or the sink was aborted: waiting longer is pointless; `send()`
    reconnects or raises the reason."""

    def __bool__(self) -> bool:
        raise TypeError("CreditWait: compare with `is CreditWait.GRANTED`, not as a bool")


class TrajectorySink(Protocol):
    """Where a rollout worker sends complete groups of trajectories."""

    @property
    def credits(self) -> int | None:
        """Trajectories the sink may take now without waiting (0 when not connected), or None
        for a sink that does not ration (it takes everything at once)."""
        ...

    @property
    def learner_version(self) -> int:
        """The learner's weight version as of its latest grant, -1 when unknown."""
        ...

    @property
    def carried(self) -> int:
        """Trajectories a failed send kept, to go first in the next one (0 for a sink that never
        fails a send); a draining worker sends them alone before it exits."""
        ...

    def send(self, trajectories: list[Trajectory]) -> SendResult:
        """Deliver `trajectories` (blocking within credits) and say what became of each id."""
        ...

    def wait_for_credits(self, n: int, timeout_s: float) -> CreditWait:
        """Block up to `timeout_s` until `n` trajectories (or the sink's whole share) may be sent.
        A sink without credits answers GRANTED at once."""
        ...


class ListSink:
    """In memory, without credits: keeps every batch sent, accepts each id once (a repeated id is
    a duplicate, as at the learner). `learner_version` may be set by a test; -1 by default."""

    credits: int | None = None
    carried: int = 0  # every send is taken whole

    def __init__(self, learner_version: int = -1) -> None:
        self.learner_version = learner_version
        self.batches: list[list[Trajectory]] = []
        self._seen: set[str] = set()

    @property
    def sent(self) -> list[Trajectory]:
        """Every trajectory sent, in order."""
        return [t for batch in self.batches for t in batch]

    def send(self, trajectories: list[Trajectory]) -> SendResult:
        result = SendResult(learner_version=self.learner_version)
        for t in trajectories:
            (result.duplicate if t.id in self._seen else result.accepted).append(t.id)
            self._seen.add(t.id)
        self.batches.append(list(trajectories))
        return result

    def wait_for_credits(self, n: int, timeout_s: float) -> CreditWait:
        return CreditWait.GRANTED
