"""The simulated product's like rate by serving version (summary.json's `live.by_version`):
the ratings it sent, grouped by the version that served them, oldest version first."""

from __future__ import annotations

from rewardloop.config import load_config
from rewardloop.serving.sim_product import SimProduct


def test_by_version_groups_the_sent_ratings():
    sim = SimProduct("http://127.0.0.1:9", load_config(None, ["serve.sim_users=2"]))
    # (seconds since start when served, version, liked, like probability); never started
    sim.liked = [(1.0, 3, 1.0, 0.9), (0.5, 0, 0.0, 0.2), (2.0, 3, 0.0, 0.9), (0.7, 0, 1.0, 0.2)]
    sim.liked.append((3.0, 3, 1.0, 0.9))
    assert sim.by_version() == [
        {"version": 0, "like_rate": 0.5, "ratings": 2},
        {"version": 3, "like_rate": 2 / 3, "ratings": 3},
    ]
    assert sim.like_rate(0.0, 1.0) == (0.5, 2)
