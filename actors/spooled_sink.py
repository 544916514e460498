"""`SpooledSink`: a `TrajectorySink` that puts every trajectory in the worker's spool before it
sends it, records the learner's answers, and re-sends what a killed predecessor left unacked.

    sink = SpooledSink(TrajectoryClient(...), Spool(spool_dir / worker_id))
    sink.resend_unacked()          # first, after a restart: what the dead process never got
    worker = RolloutWorker(..., sink)
    worker.on_dropped = sink.dropped

Anything acked (accepted, duplicate or rejected: the learner has decided either way) is done for
the spool. What a send could not deliver stays unacked there and, in memory, in the inner
client's carry, which sends it first next time. Other attributes (`close`, `abort`, `stats`)
are the inner sink's.
"""

from __future__ import annotations

import logging

from rewardloop.actors.spool import Spool
from rewardloop.sink import CreditWait, SendResult, TrajectorySink
from rewardloop.trajectory import Trajectory

log = logging.getLogger(__name__)


class SpooledSink:
    def __init__(self, inner: TrajectorySink, spool: Spool):
        self.inner = inner
        self.spool = spool
        self.resent = 0  # trajectories a predecessor left unacked, re-sent by this process
        self.resent_duplicate = 0  # of those, the ones the learner already had

    @property
    def credits(self) -> int | None:
        return self.inner.credits

    @property
    def learner_version(self) -> int:
        return self.inner.learner_version

    @property
    def carried(self) -> int:
        return self.inner.carried

    def wait_for_credits(self, n: int, timeout_s: float) -> CreditWait:
        return self.inner.wait_for_credits(n, timeout_s)

    def send(self, trajectories: list[Trajectory]) -> SendResult:
        self.spool.append(trajectories)  # on disk before it leaves
        result = self.inner.send(trajectories)
        answered = [*result.accepted, *result.duplicate, *(tid for tid, _ in result.rejected)]
        self.spool.acked(answered)
        return result

    def resend_unacked(self) -> SendResult:
        """Send what the spool holds unacked (left by a killed process), before anything new."""
        trajs = self.spool.unacked()
        if not trajs:
            return SendResult()
        log.info("spool %s: re-sending %d unacked trajectories", self.spool.dir, len(trajs))
        self.resent += len(trajs)
        result = self.send(trajs)
        self.resent_duplicate += result.n_duplicate
        return result

    def dropped(self, items: list[tuple[str, str, str]]) -> None:
        """(id, outcome, reason) of trajectories the worker dropped itself (RolloutWorker)."""
        self.spool.dropped(items)

    def spool_stats(self) -> dict:
        """What the spool holds and did: for the worker's counters in summary.json."""
        return {
            **{f"spool_{k}": v for k, v in self.spool.stats.items()},
            "spool_unacked": len(self.spool.unacked_ids),
            "spool_resent": self.resent,
            "spool_resent_duplicate": self.resent_duplicate,
        }

    def __getattr__(self, name: str):
        return getattr(self.inner, name)
