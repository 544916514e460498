"""What a worker keeps of trajectories the learner already acked, until a checkpoint covers them.

An Ack means "the learner has it", not "it survives the learner". A learner killed between two
resume checkpoints comes back (Ray restarts it, or `rewardloop train --resume`) from the older
one, without what it acked since. So the `TrajectoryClient` keeps each acked batch here with the
`learner_version` its Ack named, forgets those below the Ack's `durable_version` (they are in a
complete checkpoint: held, trained or dropped, and remembered by id), and when a new stream
answers with another `incarnation` than the last one, hands back everything it kept, oldest
first, to be sent again. The new learner reports the ids its checkpoint has as duplicates, so
nothing is trained twice. Bounded: past `limit` trajectories the oldest are forgotten (counted
in `overflowed`; raise `rollout.retain_acked` if that is ever non-zero). A spooled worker keeps
the same on disk too (actors/spool.py), so a worker killed with the learner loses nothing:
`fold_ack` puts who answered each id (`SendResult.answers`) into the send's result for it.
"""

from __future__ import annotations

import collections
import threading

from rewardloop.pb import trajectory_pb2
from rewardloop.sink import SendResult
from rewardloop.trajectory import Trajectory
from rewardloop.wire_columns import accepted_ids


def fold_ack(result: SendResult, ack: trajectory_pb2.Ack, sent: list[Trajectory]) -> None:
    """Add one batch's Ack (for the trajectories `sent` in it) to `result`, with its answerer."""
    accepted = accepted_ids(ack, sent) if ack.accepted_rest else list(ack.accepted)
    result.accepted.extend(accepted)
    result.duplicate.extend(ack.duplicate)
    result.rejected.extend((r.id, r.reason) for r in ack.rejected)
    result.learner_version = max(result.learner_version, ack.learner_version)
    ids = [*accepted, *ack.duplicate, *(r.id for r in ack.rejected if r.id)]
    result.answers.append((ack.incarnation, ack.learner_version, ack.durable_version, ids))


class AckedWindow:
    """Acked-but-not-yet-durable trajectories of one client (thread-safe, bounded)."""

    def __init__(self, limit: int):
        if limit < 0:
            raise ValueError(f"limit: must be >= 0, got {limit}")
        self.limit = limit
        self._lock = threading.Lock()
        self._kept: collections.OrderedDict[str, tuple[int, Trajectory]] = collections.OrderedDict()
        self.incarnation = ""  # the learner process the kept acks came from
        self._durable = 0  # the newest durable_version seen from it
        self.overflowed = 0
        self.resent = 0
        self.incarnations_seen = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._kept)

    def add(self, trajs: list[Trajectory], ack_version: int, durable_version: int) -> None:
        """An Ack at `ack_version` answered these; keep them unless already durable."""
        if not self.limit or ack_version < durable_version:
            return
        with self._lock:
            for t in trajs:
                self._kept[t.id] = (ack_version, t)
                self._kept.move_to_end(t.id)
            while len(self._kept) > self.limit:
                self._kept.popitem(last=False)
                self.overflowed += 1

    def forget_below(self, durable_version: int) -> None:
        """Drop what a complete checkpoint at `durable_version` covers (acked below it)."""
        with self._lock:
            if durable_version <= self._durable:  # add() keeps nothing below the last one
                return
            self._durable = durable_version
            covered = [k for k, (v, _) in self._kept.items() if v < durable_version]
            for k in covered:
                del self._kept[k]

    def on_stream(self, incarnation: str) -> list[Trajectory]:
        """A new stream's first Ack named `incarnation`: what to send again (oldest first).

        Nothing when it is the learner the kept acks came from (or it names none)."""
        if not incarnation:
            return []
        with self._lock:
            if incarnation == self.incarnation:
                return []
            previous, self.incarnation = self.incarnation, incarnation
            self._durable = 0  # a new learner counts its checkpoints' versions anew
            self.incarnations_seen += 1
            if not previous:
                return []
            again = [t for _, t in self._kept.values()]
            self._kept.clear()
            self.resent += len(again)
            return again

    def stats(self) -> dict:
        with self._lock:
            return {
                "retained": len(self._kept),
                "retained_resent": self.resent,
                "retained_overflowed": self.overflowed,
                "learner_incarnations": self.incarnations_seen,
            }
