"""The ingest server the bad-input tests share: 127.0.0.1:0 with a token, a length bound and a
small stream limit, checked at the end (still serving, every stream closed and its credits
back, the buffer exactly the accepted trajectories, each one valid)."""

from __future__ import annotations

import itertools

import grpc
from grpc_fuzz_testutil import (
    COUNTS,
    TOKEN,
    RawStream,
    bad_fields,
    new_channel,
    report,
    serving,
    wait_for,
)
from ingest_testutil import VOCAB, Version, traj

from rewardloop.actors.trajectory_client import TrajectoryClient
from rewardloop.auth import ServerSecurity
from rewardloop.learner.buffer import TrajectoryBuffer
from rewardloop.learner.ingest_server import IngestServer
from rewardloop.pb import trajectory_pb2
from rewardloop.wire import trajectory_to_proto

VERSION, STALENESS, MAX_TOKENS, WORKER, MAX_STREAMS = 5, 2, 64, "fuzz-w", 8
BAD = grpc.StatusCode.INVALID_ARGUMENT
HELLO = trajectory_pb2.TrajectoryBatch(hello=trajectory_pb2.Hello(worker_id=WORKER))
IDS = itertools.count()


def serve(accepted: set[str]):
    """A fixture body: the started server, then the final checks against `accepted` (the
    ids the tests saw accepted) and its counts reported."""
    buffer = TrajectoryBuffer(capacity=100_000, max_staleness=STALENESS)
    server = IngestServer(
        buffer,
        Version(VERSION),
        vocab_size=VOCAB,
        max_trajectory_tokens=MAX_TOKENS,
        security=ServerSecurity(token=TOKEN),
        max_streams=MAX_STREAMS,
    )
    server.start()
    server.channel = new_channel(server.address)
    yield server
    try:
        final_checks(server, accepted)
    finally:
        report("ingest", {k: v for k, v in server.stats().items() if k != "credits"})
        server.channel.close()
        server.stop(grace_s=0.5)


def final_checks(server: IngestServer, accepted: set[str]) -> None:
    """Still serving, nothing open, every credit back, the buffer exactly the accepted ones."""
    assert serving(server.channel)
    assert wait_for(lambda: server.stats()["streams_open"] == 0), server.stats()
    credits = server.stats()["credits"]
    assert credits["streams"] == 0 and not credits["outstanding"], credits
    assert len(server.buffer) == len(accepted)
    with server.buffer._cond:  # the buffer's own contents (partial groups included)
        taken = [t for g in server.buffer._groups.values() for t in g.members]
    assert {t.id for t in taken} == accepted  # each valid one exactly once, nothing else
    for t in taken:  # and what went in is what trajectory.proto allows
        assert bad_fields(trajectory_to_proto(t), **RULES) == set(), t


RULES = dict(
    worker=WORKER, version=VERSION, staleness=STALENESS, vocab=VOCAB, max_tokens=MAX_TOKENS
)


def open_stream(server, need: int = 1) -> RawStream:
    """A stream past its hello, holding `need` credits (a stream that just closed may still
    hold the free ones: its leftovers come as grants once the server has closed it)."""
    raw = RawStream(server.channel, trajectory_pb2.Ack)
    raw.send(HELLO.SerializeToString())
    credits = 0
    while credits < need:
        ack = raw.next()
        assert isinstance(ack, trajectory_pb2.Ack) and ack.batch_seq == 0, ack
        credits += ack.credits
    return raw


def a_good_client_gets_through(ingest) -> list[str]:
    """The real worker client sends 3 good trajectories after the fuzzing; all are accepted.
    Returns their ids (the caller adds them to what the buffer must hold)."""
    good = [traj(f"good{i}-{next(IDS)}", version=VERSION) for i in range(3)]
    with TrajectoryClient(ingest.address, WORKER, timeout_s=10.0, token=TOKEN) as client:
        result = client.send(good)
    COUNTS["ingest"] += 1
    assert sorted(result.accepted) == sorted(t.id for t in good) and not result.rejected
    return list(result.accepted)
