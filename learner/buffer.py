"""The learner's trajectory buffer: bounded, grouped, staleness-checked, and never silent.

Trajectories arrive one by one from the ingest server and are grouped by `group_id`; the
trainer takes whole groups (group-relative advantages need every member), oldest group first.
Every way out of the buffer is counted: taken for training, dropped because it became too stale
(`policy_version < current_version - max_staleness`), or dropped because its group never
completed (a worker died mid-group). Each trajectory that leaves is reported through
`on_release(worker_id, count)` -- the credit return path of the ingest server.

Ids are remembered while they could still be admitted, so a trajectory re-sent after a
reconnect is a duplicate and is trained on at most once: seen ids and closed groups are kept
for `max_staleness + forget_margin` versions (learner/recent_ids.py), then forgotten, here and in
the ledger (`ledger.forget_below`); one re-sent after that is older than the staleness bound and
is refused as stale by its version alone. Memory and the resume checkpoint stay bounded in the
length of the run (held groups, and the ids of a few versions). The buffer's `ledger`
(learner/accounting.py) gets each way out by id: taken (in flight until the service records
the step as trained), stale or expired; it is told outside the lock, like `on_release`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator

from rewardloop.learner.accounting import Ledger
from rewardloop.learner.buffer_group import Group as _Group
from rewardloop.learner.recent_ids import RecentIds
from rewardloop.trajectory import Trajectory

ReleaseFn = Callable[[str, int], None]
FORGET_MARGIN = 64
"""Versions ids are kept past the staleness bound by default. A re-send within them (a worker
restarted, a learner restored from a checkpoint `checkpoint_every_steps` back) is answered as
the duplicate it is; past them it is refused as stale and the audit report resolves it. About
10 kB per version at 64 trajectories a step: memory, not a trade against correctness."""


_ACCEPTED, _DUPLICATE = ("accepted", ""), ("duplicate", "")


class TrajectoryBuffer:
    """Thread-safe grouped buffer (one lock, one condition).

    `on_release` may be replaced after construction (the ingest server hooks itself in); it is
    always called outside the lock.
    """

    def __init__(
        self,
        capacity: int,
        max_staleness: int,
        on_release: ReleaseFn | None = None,
        partial_group_timeout_s: float = 60.0,
        ledger: Ledger | None = None,
        forget_margin: int | None = None,
    ):
        if capacity < 1:
            raise ValueError(f"capacity: must be >= 1, got {capacity}")
        if max_staleness < 0:
            raise ValueError(f"max_staleness: must be >= 0, got {max_staleness}")
        self.capacity = capacity
        self.max_staleness = max_staleness
        self.on_release = on_release
        self.partial_group_timeout_s = partial_group_timeout_s
        # versions kept past the staleness bound (any margin >= 0 is safe: FORGET_MARGIN)
        self.forget_margin = FORGET_MARGIN if forget_margin is None else forget_margin
        if self.forget_margin < 0:
            raise ValueError(f"forget_margin: must be >= 0, got {self.forget_margin}")
        # re-entrant, so that `admitting()` can hold it across a whole batch of `add`s
        self._cond = threading.Condition(threading.RLock())
        self._groups: OrderedDict[str, _Group] = OrderedDict()  # FIFO by first arrival
        self._seen = RecentIds()  # id -> policy_version, of recent versions
        self._closed_groups = RecentIds()  # taken or dropped (-> newest member version)
        self._forget: tuple[int, int] | None = None  # (horizon, version) to tell the ledger
        self._size = 0
        self._closed = False
        self._counts: Counter[str] = Counter()
        self._rejected: Counter[str] = Counter()
        self._lag: Counter[int] = Counter()
        self.ledger = ledger if ledger is not None else Ledger()
        # (trajectories, outcome, version, reason) decided under the lock, told to the ledger
        # after it (outcome "taken": handed to the trainer)
        self._decisions: list[tuple[list[Trajectory], str, int, str]] = []
        self._admitting = 0  # depth of `admitting()`: adds under it defer the takers' wake-up
        self._wake_due = False

    # ---- ingest side -------------------------------------------------------------------

    @contextlib.contextmanager
    def admitting(self) -> Iterator[None]:
        """`with buffer.admitting():` holds the buffer's lock across several `add`s (the ingest
        server admits a whole batch under it): one acquisition per batch instead of one per
        trajectory, and the trainer's `take_groups` is woken once when the batch is in, not
        once per group it completes (each wake is a thread switch while the lock is held).
        Hold it only around `add`s (it is the lock `take_groups` waits on)."""
        with self._cond:
            self._admitting += 1
            try:
                yield
            finally:
                self._admitting -= 1
                if self._wake_due and not self._admitting:
                    self._wake_due = False
                    self._cond.notify_all()

    def add(self, traj: Trajectory, current_version: int) -> tuple[str, str]:
        """Admit one trajectory: ("accepted", "") | ("duplicate", "") | ("rejected", reason)."""
        return self.add_batch((traj,), current_version)[0]

    def add_batch(self, trajs, current_version: int) -> list[tuple[str, str]]:
        """`add` of each of `trajs` in order, under one acquisition of the lock (the ingest
        server's batch): the verdicts one `add` each would give, at a fraction of the cost."""
        out: list[tuple[str, str]] = []
        seen, groups, closed = self._seen, self._groups, self._closed_groups
        with self._cond:
            low, accepted, completed = current_version - self.max_staleness, 0, False
            for traj in trajs:
                tid, gid, version = traj.id, traj.group_id, traj.policy_version
                if tid in seen:
                    self._counts["duplicate"] += 1
                    out.append(_DUPLICATE)
                    continue
                group = groups.get(gid)
                # the common case in one expression; any doubt takes `_reject_reason`'s order
                if not (
                    low <= version <= current_version
                    and self._size < self.capacity
                    and gid not in closed
                    and (
                        group is None
                        or max(1, traj.group_size) == group.group_size
                        and len(group.members) < group.group_size
                    )
                ):
                    reason = self._reject_reason(traj, current_version)
                    if reason:
                        self._rejected[reason.split(":", 1)[0]] += 1
                        out.append(("rejected", reason))
                        continue
                if group is None:
                    group = groups[gid] = _Group(max(1, traj.group_size), time.monotonic())
                group.append(traj)
                seen.add(tid, version)
                self._size += 1
                accepted += 1
                out.append(_ACCEPTED)
                completed = completed or len(group.members) >= group.group_size
            self._counts["accepted"] += accepted
            if completed and self._admitting:
                self._wake_due = True  # woken when the batch is in (`admitting`)
            elif completed:
                self._cond.notify_all()
        return out

    def _reject_reason(self, traj: Trajectory, current_version: int) -> str:
        bound = current_version - self.max_staleness
        if traj.policy_version < bound:
            return (
                f"policy_version: {traj.policy_version} is too stale "
                f"(must be >= {bound} = current {current_version} - max_staleness {self.max_staleness})"
            )
        if traj.policy_version > current_version:
            return (
                f"policy_version: {traj.policy_version} is from the future "
                f"(learner is at {current_version})"
            )
        if traj.group_id in self._closed_groups:
            return f"group_id: group {traj.group_id!r} was already taken or dropped"
        group = self._groups.get(traj.group_id)
        if group is not None:
            if max(1, traj.group_size) != group.group_size:
                return f"group_size: {traj.group_size} differs from the group's {group.group_size}"
            if group.complete:
                return f"group_id: group {traj.group_id!r} already has {group.group_size} members"
        if self._size >= self.capacity:
            return "buffer full"
        return ""

    # ---- trainer side ------------------------------------------------------------------

    def take_groups(
        self, n_groups: int, current_version: int, timeout_s: float
    ) -> list[list[Trajectory]] | None:
        """Wait up to `timeout_s` for `n_groups` complete groups; take the oldest ones.

        Too-stale and expired partial groups are dropped first (counted and released).
        Returns None on timeout (or after `close()`), leaving the buffer as it was.
        """
        if n_groups < 1:
            raise ValueError(f"n_groups: must be >= 1, got {n_groups}")
        deadline = time.monotonic() + timeout_s
        released: Counter[str] = Counter()
        taken: list[list[Trajectory]] | None = None
        with self._cond:
            while True:
                self._prune_locked(current_version, released)
                groups = self._groups
                complete = [gid for gid, g in groups.items() if len(g.members) >= g.group_size]
                # Oldest weights first (ties: first arrival), so the group closest to going
                # stale is used first, not one that a faster worker sent after it.
                if len(complete) > 1:
                    complete.sort(key=lambda gid: groups[gid].min_version)
                if len(complete) >= n_groups:
                    taken = [
                        self._pop_locked(gid, current_version, released)
                        for gid in complete[:n_groups]
                    ]
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    break
                self._cond.wait(min(remaining, self._next_expiry_in()))
        self._release(released)
        return taken

    def prune(self, current_version: int) -> int:
        """Drop too-stale and expired partial groups now; returns how many trajectories left."""
        released: Counter[str] = Counter()
        with self._cond:
            self._prune_locked(current_version, released)
        self._release(released)
        return sum(released.values())

    def close(self) -> None:
        """Wake every waiting `take_groups` (they return None); adding still works."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _pop_locked(
        self, gid: str, current_version: int, released: Counter[str]
    ) -> list[Trajectory]:
        group = self._groups.pop(gid)
        self._close_locked(gid, group)
        self._size -= len(group.members)
        self._counts["taken"] += len(group.members)
        self._lag.update([current_version - t.policy_version for t in group.members])
        released.update([t.worker_id for t in group.members])
        self._decisions.append((group.members, "taken", current_version, ""))
        return group.members

    def _prune_locked(self, current_version: int, released: Counter[str]) -> None:
        bound = current_version - self.max_staleness
        now = time.monotonic()
        timeout = self.partial_group_timeout_s
        doomed = [
            gid
            for gid, g in self._groups.items()
            if g.min_version < bound
            or (len(g.members) < g.group_size and now - g.first_arrival > timeout)
        ]
        for gid in doomed:
            group = self._groups[gid]
            stale = sum(1 for t in group.members if t.policy_version < bound)
            # A stale member breaks its group for good: its fresh siblings can never complete it.
            self._counts["dropped_stale"] += stale
            self._counts["dropped_incomplete"] += len(group.members) - stale
            self._groups.pop(gid)
            self._close_locked(gid, group)
            self._size -= len(group.members)
            for t in group.members:
                released[t.worker_id] += 1
            if stale:
                reason = (
                    f"group {gid}: {stale} of {len(group.members)} member(s) older than "
                    f"version {bound} (current {current_version} - max_staleness)"
                )
                self._decisions.append((group.members, "stale", current_version, reason))
            else:
                reason = (
                    f"group {gid}: {len(group.members)} of {group.group_size} member(s) after "
                    f"{self.partial_group_timeout_s:.0f}s (partial_group_timeout_s)"
                )
                self._decisions.append((group.members, "expired", current_version, reason))

        self._forget_locked(current_version)

    def _close_locked(self, gid: str, group: _Group) -> None:
        """Late members are refused while the group's newest version is remembered; after
        that they are older than the staleness bound (a group is generated at one version)."""
        self._closed_groups.add(gid, max(t.policy_version for t in group.members))

    def _forget_locked(self, current_version: int) -> None:
        """Forget ids and groups below `current_version - max_staleness - forget_margin`:
        none is held (older ones were just dropped stale), none can be admitted again."""
        horizon = current_version - self.max_staleness - self.forget_margin
        if horizon <= 0 or (self._seen.horizon is not None and horizon <= self._seen.horizon):
            return
        self._seen.forget_below(horizon)
        self._closed_groups.forget_below(horizon)
        self._forget = (horizon, current_version)

    def _next_expiry_in(self) -> float:
        """Seconds until the oldest partial group expires (so a waiting take can drop it)."""
        partial = [g.first_arrival for g in self._groups.values() if not g.complete]
        if not partial:
            return 3600.0
        return max(0.01, min(partial) + self.partial_group_timeout_s - time.monotonic() + 0.01)

    def _release(self, released: Counter[str]) -> None:
        with self._cond:
            decisions, self._decisions = self._decisions, []
            forget, self._forget = self._forget, None
        for trajs, outcome, version, reason in decisions:
            if outcome == "taken":
                self.ledger.taken(trajs)
            else:
                self.ledger.dropped(trajs, outcome, version, reason)
        if forget is not None:  # after the decisions above, so none is filed after forgetting
            self.ledger.forget_below(*forget)
        hook = self.on_release
        if hook is None:
            return
        for worker_id, count in released.items():
            if count:
                hook(worker_id, count)

    # ---- introspection -----------------------------------------------------------------

    def held_by_worker(self) -> dict[str, int]:
        """How many buffered trajectories each worker has (a new credit ledger starts from this)."""
        with self._cond:
            held: Counter[str] = Counter()
            for g in self._groups.values():
                for t in g.members:
                    held[t.worker_id] += 1
            return dict(held)

    def held_ids(self) -> dict[str, str]:
        """id -> worker of every buffered trajectory (in flight when the learner stops)."""
        with self._cond:
            return {t.id: t.worker_id for g in self._groups.values() for t in g.members}

    def __len__(self) -> int:
        with self._cond:
            return self._size

    # ---- resume (learner/resume_state.py) ----------------------------------------------

    def state(self) -> dict:
        """What a resumed learner needs: held groups, the recent seen ids and closed groups
        (bounded, see the module doc), counters.

        Taken under the lock, so it is one consistent moment of the ingest side."""
        with self._cond:
            return {
                "groups": [(gid, g.group_size, list(g.members)) for gid, g in self._groups.items()],
                "seen": self._seen.state(),
                "closed_groups": self._closed_groups.state(),
                "counts": Counter(self._counts),
                "rejected": Counter(self._rejected),
                "lag": Counter(self._lag),
            }

    def load_state(self, state: dict) -> None:
        """Replace the contents with `state()` of another buffer (partial-group clocks restart)."""
        with self._cond:
            now = time.monotonic()
            self._groups = OrderedDict(
                (gid, _Group(size, now, list(members))) for gid, size, members in state["groups"]
            )
            self._size = sum(len(g.members) for g in self._groups.values())
            self._seen = RecentIds.from_state(state["seen"])  # a plain set: an older checkpoint
            self._closed_groups = RecentIds.from_state(state["closed_groups"])
            self._counts = Counter(state["counts"])
            self._rejected = Counter(state["rejected"])
            self._lag = Counter(state["lag"])
            self._cond.notify_all()

    def stats(self) -> dict:
        """Counters since construction plus the current fill and the lag of taken items."""
        with self._cond:
            lag_n = sum(self._lag.values())
            lag_sum = sum(k * v for k, v in self._lag.items())
            return {
                "accepted": self._counts["accepted"],
                "duplicate": self._counts["duplicate"],
                "rejected": dict(self._rejected),
                "rejected_total": sum(self._rejected.values()),
                "dropped_stale": self._counts["dropped_stale"],
                "dropped_incomplete": self._counts["dropped_incomplete"],
                "taken": self._counts["taken"],
                "size": self._size,
                "capacity": self.capacity,
                "groups": len(self._groups),
                "groups_complete": sum(1 for g in self._groups.values() if g.complete),
                "ids_remembered": len(self._seen),
                "groups_remembered": len(self._closed_groups),
                "lag_mean": lag_sum / lag_n if lag_n else 0.0,
                "lag_hist": dict(sorted(self._lag.items())),
            }
