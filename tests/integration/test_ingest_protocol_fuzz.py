"""Protocol faults, tokens and dropped connections against the real IngestServer.

No hello, a second hello, batch_seq 0, bytes that are no TrajectoryBatch (INVALID_ARGUMENT
naming the field, counted in `protocol_errors`); missing, wrong, odd and oversized tokens
(UNAUTHENTICATED, counted), which must not use up `learner.max_streams`; streams cut off in the
middle of a 16 MB message, channels closed under a stream, and raw TCP junk. Afterwards the
server answers health, holds no stream, has every credit back, and a real TrajectoryClient
still gets through (`ingest_fuzz_testutil.serve` checks the end state).
"""

from __future__ import annotations

import random
import socket

import grpc
import pytest
from grpc_fuzz_testutil import COUNTS, RawStream, new_channel, serving, wait_for
from ingest_fuzz_testutil import (
    BAD,
    HELLO,
    IDS,
    MAX_STREAMS,
    VERSION,
    WORKER,
    a_good_client_gets_through,
    serve,
)
from ingest_testutil import traj

from rewardloop.pb import trajectory_pb2
from rewardloop.wire import pack_ids, pack_logprobs, trajectory_to_proto

ACCEPTED: set[str] = set()


@pytest.fixture(scope="module")
def ingest():
    yield from serve(ACCEPTED)


def valid_batch_bytes(seq: int) -> bytes:
    t = trajectory_to_proto(traj(f"p{next(IDS)}", version=VERSION, worker_id=WORKER))
    return trajectory_pb2.TrajectoryBatch(batch_seq=seq, trajectories=[t]).SerializeToString()


BAD_UTF8 = (
    trajectory_pb2.TrajectoryBatch(batch_seq=1, trajectories=[trajectory_to_proto(traj("ZZZZZ"))])
    .SerializeToString()
    .replace(b"ZZZZZ", b"\xff\xfe\xc0zz")
)
PROTOCOL = {  # name: (messages, the field the INVALID_ARGUMENT names)
    "no hello": ([valid_batch_bytes(1)], "hello"),
    "empty first message": ([b""], "hello"),
    "empty worker id": (
        [trajectory_pb2.TrajectoryBatch(hello={}).SerializeToString()],
        "hello.worker_id",
    ),
    "hello carrying trajectories": (
        [
            trajectory_pb2.TrajectoryBatch(
                hello=HELLO.hello, trajectories=[trajectory_to_proto(traj("h"))]
            ).SerializeToString()
        ],
        "hello",
    ),
    "garbage first": ([b"\xff\xfe\xfd"], "request"),
    "second hello": ([HELLO.SerializeToString(), HELLO.SerializeToString()], "hello"),
    "batch_seq 0": (
        [HELLO.SerializeToString(), trajectory_pb2.TrajectoryBatch().SerializeToString()],
        "batch_seq",
    ),
    "garbage after hello": ([HELLO.SerializeToString(), b"\x12\x05\x0a\x03ab"], "request"),
    "invalid utf-8 id": ([HELLO.SerializeToString(), BAD_UTF8], "request"),
}


@pytest.mark.parametrize("name", PROTOCOL)
def test_protocol_errors_are_invalid_argument_and_counted(ingest, name):
    messages, field = PROTOCOL[name]
    before = ingest.stats().get("protocol_errors", 0)
    raw = RawStream(ingest.channel, trajectory_pb2.Ack)
    try:
        answers = []
        for k, data in enumerate(messages):
            raw.send(data)
            answers.append(raw.answer() if k else raw.next())
    finally:
        raw.close()
    code, details = answers[-1]
    assert (code, details.split(":", 1)[0]) == (BAD, field), answers
    assert ingest.stats()["protocol_errors"] == before + 1


@pytest.mark.parametrize(
    "token", [None, "wrong", "", "fuzz-learner-t0ken ", "t\\xc3\\xb6k", "x" * 8000]
)
def test_missing_or_wrong_tokens_are_unauthenticated_and_counted(ingest, token):
    before = ingest.stats()["unauthenticated"]
    answers = []

    def answered() -> bool:  # a slot of a call that just ended is freed a moment later
        raw = RawStream(ingest.channel, trajectory_pb2.Ack, token=token)
        try:
            raw.send(HELLO.SerializeToString())
            answers.append(raw.next())
        finally:
            raw.close()
        last = answers[-1]
        return isinstance(last, trajectory_pb2.Ack) or last[0] != grpc.StatusCode.RESOURCE_EXHAUSTED

    assert wait_for(answered), answers
    answer = answers[-1]
    if token == "fuzz-learner-t0ken ":  # bearer() strips blanks: the right token after all
        assert isinstance(answer, trajectory_pb2.Ack), answer
        return
    assert answer[0] == grpc.StatusCode.UNAUTHENTICATED and "bearer token" in answer[1]
    # each attempt's token was checked and counted (one refused busy, a loaded machine, too)
    assert ingest.stats()["unauthenticated"] == before + len(answers)


def test_refused_tokens_do_not_use_up_the_streams(ingest):
    """Each refusal once kept one of learner.max_streams for good (the token check sat inside
    the call limit), so max_streams bad tokens locked every worker out."""
    for _ in range(3 * MAX_STREAMS):
        raw = RawStream(ingest.channel, trajectory_pb2.Ack, token="wrong")
        raw.send(HELLO.SerializeToString())
        assert raw.next()[0] == grpc.StatusCode.UNAUTHENTICATED
        raw.close()
    assert wait_for(lambda: all_streams_open(ingest))  # all of them are still there


def all_streams_open(ingest) -> bool:
    """MAX_STREAMS streams get their hello answered at once (a slot is freed a moment after
    its call ended, so the caller polls this)."""
    streams = [RawStream(ingest.channel, trajectory_pb2.Ack) for _ in range(MAX_STREAMS)]
    try:
        for raw in streams:
            raw.send(HELLO.SerializeToString())
        answers = [raw.next() for raw in streams]
    finally:
        for raw in streams:
            raw.close()
    refused = [a for a in answers if not isinstance(a, trajectory_pb2.Ack)]
    assert all(a[0] == grpc.StatusCode.RESOURCE_EXHAUSTED for a in refused), refused
    return not refused


def test_streams_dropped_mid_message_leave_nothing_behind(ingest):
    big = trajectory_to_proto(traj(f"big{next(IDS)}", version=VERSION))
    big.completion_ids = pack_ids([1] * 2_000_000)  # 16 MB batch, cut off while in flight
    big.behavior_logprobs = pack_logprobs([-0.5] * 2_000_000)
    big_bytes = trajectory_pb2.TrajectoryBatch(batch_seq=1, trajectories=[big]).SerializeToString()
    for cut in ("cancel", "close channel"):
        channel = new_channel(ingest.address)
        raw = RawStream(channel, trajectory_pb2.Ack)
        raw.send(HELLO.SerializeToString())
        assert isinstance(raw.next(), trajectory_pb2.Ack)
        raw.send(big_bytes)
        if cut == "cancel":
            raw.call.cancel()
        channel.close()
    for junk in (
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04",
        b"GET / HTTP/1.1\r\n\r\n",
        random.Random(3).randbytes(4096),
    ):
        host, port = ingest.address.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as s:
            COUNTS["ingest"] += 1
            s.sendall(junk)  # then hang up without a word more
    assert wait_for(lambda: ingest.stats()["streams_open"] == 0), ingest.stats()
    assert serving(ingest.channel)
    assert "big" not in " ".join(ACCEPTED)


def test_a_good_client_still_gets_through(ingest):
    """After all of the above (pytest runs this file top to bottom), the real worker client."""
    ACCEPTED.update(a_good_client_gets_through(ingest))
