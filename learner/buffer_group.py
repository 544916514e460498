"""One group of the learner's buffer (`learner/buffer.py`): its members, in arrival order."""

from __future__ import annotations

from rewardloop.trajectory import Trajectory


class Group:
    """A group's members, and its oldest member's version (the staleness check and the order
    `take_groups` takes groups in read it instead of walking the members)."""

    __slots__ = ("group_size", "first_arrival", "members", "min_version")

    def __init__(self, group_size: int, first_arrival: float, members=None):
        self.group_size = group_size
        self.first_arrival = first_arrival
        self.members: list[Trajectory] = members if members is not None else []
        self.min_version = min((t.policy_version for t in self.members), default=NO_MEMBER)

    @property
    def complete(self) -> bool:
        return len(self.members) >= self.group_size

    def append(self, traj: Trajectory) -> None:
        self.members.append(traj)
        if traj.policy_version < self.min_version:
            self.min_version = traj.policy_version


NO_MEMBER = 2**62
