"""The feedback gateway runs unchanged as a Ray actor (cluster/ wraps it the same way)."""

from rewardloop.config import FeedbackConfig, to_dict
from rewardloop.feedback.gateway.client import connect
from rewardloop.feedback.gateway.server import FeedbackGateway
from rewardloop.scoring import ScoreRequest


def test_gateway_as_a_ray_actor(ray_local, tmp_path):
    ray = ray_local
    cfg = FeedbackConfig(
        store_path=str(tmp_path / "actor.sqlite3"), http_port=0, grpc_port=0, token="tok"
    )
    actor = ray.remote(num_cpus=0)(FeedbackGateway).remote(
        to_dict(cfg)
    )  # a plain dict ships anywhere
    try:
        addresses = ray.get(actor.start.remote(), timeout=60)
        client = connect(
            addresses["grpc_target"], headers={"Authorization": "Bearer tok"}, timeout_s=10
        )
        client.publish([ScoreRequest(id="a1", prompt="p", completion="c")], "pub")
        assert client.submit("a1", 1.0, rater="r-1").stored
        client.close()
        stats = ray.get(actor.stats.remote(), timeout=30)
        assert stats["published"] == 1 and stats["rated"] == 1
    finally:
        ray.get(actor.stop.remote(), timeout=30)
        ray.kill(actor)
