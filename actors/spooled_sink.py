"""`SpooledSink`: a `TrajectorySink` that puts every trajectory in the worker's spool before it
sends it, records the learner's answers, and re-sends what a killed predecessor left unacked.

    sink = SpooledSink(TrajectoryClient(...), Spool(spool_dir / worker_id))
    sink.resend_unacked()          # first, after a restart: what the dead process never got
    worker = RolloutWorker(..., sink)
    worker.on_dropped = sink.dropped

An answer (accepted, duplicate or rejected) is not the end for the spool: it holds each id
until the learner process that answered it has a resume checkpoint covering the answer
(`SendResult.answers`, actors/spool.py), because a learner killed between checkpoints comes back
without what it answered since. When a send is answered by another learner process than an
earlier one (it restarted), the ids the earlier one answered and never made durable are read
back from the spool and sent again at once (`resent_orphans`); the new learner reports the ones
its checkpoint has as duplicates. What a send could not deliver stays held there and, in
memory, in the inner client's carry, which sends it first next time. Other attributes (`close`,
`abort`, `stats`) are the inner sink's.
"""

from __future__ import annotations

import logging

from rewardloop.actors.spool import Spool
from rewardloop.errors import Unavailable
from rewardloop.sink import CreditWait, SendResult, TrajectorySink
from rewardloop.trajectory import Trajectory

log = logging.getLogger(__name__)
ORPHAN_ROUNDS = 3


class SpooledSink:
    def __init__(self, inner: TrajectorySink, spool: Spool):
        self.inner = inner
        self.spool = spool
        self.resent = 0  # trajectories a predecessor left unacked, re-sent by this process
        self.resent_duplicate = 0  # of those, the ones the learner already had
        self.incarnation = ""  # the learner process that answered last
        self._orphans_checked = ""  # the one the spool holds no orphans for
        self.resent_orphans = 0  # answered by a learner process that then died: sent again
        self.resent_orphans_duplicate = 0  # of those, the ones its successor's checkpoint had

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
        self._record(result)
        self._resend_orphans()
        return result

    def _record(self, result: SendResult) -> None:
        """Tell the spool who answered what, and how far each answerer's checkpoints are."""
        named: set[str] = set()
        for incarnation, version, durable, ids in result.answers:
            self.spool.answered(ids, incarnation, version)
            self.spool.durable(incarnation, durable)
            named.update(ids)
            self.incarnation = incarnation or self.incarnation
        answered = [*result.accepted, *result.duplicate, *(tid for tid, _ in result.rejected)]
        self.spool.acked([tid for tid in answered if tid not in named])  # no answerer named

    def _resend_orphans(self) -> None:
        """Ids an earlier learner process answered, held since: send them to this one (a few
        rounds at most, should it change again meanwhile). If the learner is unreachable now
        they stay held (and in the client's carry) and go with the next send."""
        for _ in range(ORPHAN_ROUNDS):
            if not self.incarnation or self.incarnation == self._orphans_checked:
                return  # orphans appear only when another learner process answers
            ids = self.spool.orphans(self.incarnation)
            trajs = self.spool.load(ids) if ids else []
            if not trajs:
                self._orphans_checked = self.incarnation
                return
            log.info(
                "spool %s: re-sending %d answered by an earlier learner", self.spool.dir, len(trajs)
            )
            self.resent_orphans += len(trajs)
            try:
                result = self.inner.send(trajs)
            except Unavailable as exc:
                log.warning("spool %s: re-send to the new learner: %s", self.spool.dir, exc)
                return
            self.resent_orphans_duplicate += result.n_duplicate
            self._record(result)

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
            **{f"spool_{k}": v for k, v in self.spool.disk_bytes().items()},
            "spool_unacked": len(self.spool.unacked_ids),
            "spool_answered_held": self.spool.answered_held,
            "spool_resent": self.resent,
            "spool_resent_duplicate": self.resent_duplicate,
            "spool_resent_orphans": self.resent_orphans,
            "spool_resent_orphans_duplicate": self.resent_orphans_duplicate,
        }

    def __getattr__(self, name: str):
        return getattr(self.inner, name)
