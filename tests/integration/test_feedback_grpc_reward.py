"""The gRPC reward source against real FeedbackService.Score servers on 127.0.0.1:0."""

import time
from concurrent import futures

import grpc
import pytest
from feedback_testutil import run_bounded, self_signed_cert

from rewardloop.errors import RewardServiceError
from rewardloop.feedback.gateway.score_server import ScoreServer
from rewardloop.feedback.sources.grpc_source import GrpcReward
from rewardloop.pb import feedback_pb2, feedback_pb2_grpc
from rewardloop.scoring import ScoreRequest


def reqs(n):
    return [
        ScoreRequest(id=f"t{i}", prompt="p", completion="y" * i, metadata={"k": "v"})
        for i in range(n)
    ]


def lengths(prompts, completions, metadata):
    assert all(m == {"k": "v"} for m in metadata)
    return [float(len(c)) for c in completions]


class Flaky(feedback_pb2_grpc.FeedbackServiceServicer):
    """Answers UNAVAILABLE `fail` times, then `rewards` (possibly the wrong number of them)."""

    def __init__(self, fail=0, rewards=None):
        self.fail, self.rewards, self.calls = fail, rewards, 0

    def Score(self, request, context):
        self.calls += 1
        if self.calls <= self.fail:
            context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
        rewards = self.rewards if self.rewards is not None else [1.0] * len(request.items)
        return feedback_pb2.ScoreResponse(rewards=rewards)


@pytest.fixture
def raw_server():
    servers = []

    def start(servicer):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        feedback_pb2_grpc.add_FeedbackServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for s in servers:
        s.stop(0).wait(5)


def test_scores_in_order_across_batches_with_token():
    server = ScoreServer(lengths, token="tok").start()
    try:
        src = GrpcReward(
            server.target, max_batch=2, timeout_s=5, headers={"Authorization": "Bearer tok"}
        )
        assert [s.reward for s in src.score(reqs(5))] == [0, 1, 2, 3, 4]
        src.close()
        bad = GrpcReward(server.target, timeout_s=5, retries=2)
        with pytest.raises(RewardServiceError, match="UNAUTHENTICATED"):
            bad.score(reqs(1))
        bad.close()
    finally:
        server.stop()


def test_deadline_exceeded_is_an_error_and_never_hangs():
    server = ScoreServer(lambda p, c, m: time.sleep(3) or [0.0] * len(c)).start()
    try:
        src = GrpcReward(server.target, timeout_s=0.3, retries=1)
        with pytest.raises(
            RewardServiceError, match=r"DEADLINE_EXCEEDED.*gave up after 2 attempts"
        ):
            run_bounded(lambda: src.score(reqs(1)), limit_s=10)
        src.close()
    finally:
        server.stop(grace_s=0)


def test_retries_unavailable_then_succeeds(raw_server):
    flaky = Flaky(fail=2)
    src = GrpcReward(raw_server(flaky), timeout_s=5, retries=3)
    assert [s.reward for s in src.score(reqs(2))] == [1.0, 1.0]
    assert flaky.calls == 3
    src.close()


def test_wrong_number_of_rewards_is_named(raw_server):
    src = GrpcReward(raw_server(Flaky(rewards=[1.0])), timeout_s=5, retries=0)
    with pytest.raises(RewardServiceError, match="answer has 1 rewards for 3 items"):
        src.score(reqs(3))
    src.close()


def test_tls_with_a_self_signed_certificate(tmp_path):
    cert, key = self_signed_cert(tmp_path)
    server = ScoreServer(lengths, tls_cert=cert, tls_key=key).start()
    try:
        assert server.target.startswith("grpcs://")
        src = GrpcReward(server.target, timeout_s=5, ca_cert=cert)
        assert [s.reward for s in src.score(reqs(2))] == [0.0, 1.0]
        src.close()
        untrusted = GrpcReward(server.target, timeout_s=1, retries=0)  # system roots: not trusted
        with pytest.raises(RewardServiceError):
            untrusted.score(reqs(1))
        untrusted.close()
    finally:
        server.stop()
