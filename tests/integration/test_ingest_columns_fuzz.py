"""Bad input in the column form of a batch (TrajectoryColumns, what TrajectoryClient sends).

Hypothesis takes a valid column batch of 1-4 trajectories and damages one column: its bytes
replaced, one packed value poked to NaN / inf / a negative or huge number / a token id out of
range, a repeated string column one entry short or long, an id empty or too long. The real
IngestServer (127.0.0.1:0, token set) must answer with one Ack naming a verdict for every row
(accepted, duplicate, or rejected with a reason that names a field or column) -- never
INTERNAL -- and keep only valid trajectories in its buffer (each held to
`grpc_fuzz_testutil.bad_fields`). REWARDLOOP_FUZZ_SCALE=10 runs longer.
"""

from __future__ import annotations

import itertools
import math
import re
import struct
from types import SimpleNamespace

import pytest
from grpc_fuzz_testutil import (
    BAD_CODES,
    SCALE,
    TOKEN,
    RawStream,
    bad_fields,
    new_channel,
    report,
    serving,
    wait_for,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ingest_testutil import VOCAB, Version, traj

from rewardloop.auth import ServerSecurity
from rewardloop.learner.buffer import TrajectoryBuffer
from rewardloop.learner.ingest_server import IngestServer
from rewardloop.pb import trajectory_pb2
from rewardloop.trajectory import RewardPart
from rewardloop.wire import trajectory_to_proto
from rewardloop.wire_columns import accepted_ids, batch_to_columns

VERSION, STALENESS, MAX_TOKENS, WORKER = 5, 2, 64, "cols-w"
RULES = dict(
    worker=WORKER, version=VERSION, staleness=STALENESS, vocab=VOCAB, max_tokens=MAX_TOKENS
)
HELLO = trajectory_pb2.TrajectoryBatch(hello=trajectory_pb2.Hello(worker_id=WORKER))
REASON = re.compile(r"^[a-z_][a-z_.\[\]0-9]*: \S")
IDS = itertools.count()
ACCEPTED: set[str] = set()
POKES = {  # packed column: (struct format of one value, the values to poke in)
    "prompt_lens": ("<I", [0, 2**32 - 1, 65]),
    "completion_lens": ("<I", [0, 2**32 - 1, 65]),
    "logprob_lens": ("<I", [0, 2**32 - 1, 1]),
    "reward": ("<f", [math.nan, math.inf, -math.inf]),
    "policy_version": ("<q", [-1, -(2**63), 2**63 - 1, VERSION + 1, 0]),
    "group_size": ("<i", [-1, 2**31 - 1, 0]),
    "feedback_latency_s": ("<d", [math.nan, math.inf]),
    "prompt_ids": ("<i", [-1, VOCAB, 2**31 - 1]),
    "completion_ids": ("<i", [-1, VOCAB, -(2**31)]),
    "behavior_logprobs": ("<f", [math.nan, math.inf, 1.0, -math.inf]),
    "reward_part_value": ("<f", [math.nan, math.inf]),
    "reward_part_weight": ("<f", [-math.inf, math.nan]),
}
STRINGS = ["id", "group_id", "worker_id", "prompt_key", "feedback_source", "rater"]


@pytest.fixture(scope="module")
def ingest():
    buffer = TrajectoryBuffer(capacity=100_000, max_staleness=STALENESS)
    server = IngestServer(
        buffer,
        Version(VERSION),
        vocab_size=VOCAB,
        max_trajectory_tokens=MAX_TOKENS,
        security=ServerSecurity(token=TOKEN),
    )
    server.start()
    server.channel = new_channel(server.address)
    yield server
    try:
        assert serving(server.channel)
        assert wait_for(lambda: server.stats()["streams_open"] == 0)
        with server.buffer._cond:  # the buffer's own contents
            held = [t for g in server.buffer._groups.values() for t in g.members]
        assert {t.id for t in held} == ACCEPTED and len(held) == len(ACCEPTED)
        for t in held:
            assert bad_fields(trajectory_to_proto(t), **RULES) == set(), t
    finally:
        report("ingest", {k: v for k, v in server.stats().items() if k != "credits"})
        server.channel.close()
        server.stop(grace_s=0.5)


def rows(n: int, with_parts: bool) -> list:
    out = []
    for k in range(n):
        t = traj(f"c{next(IDS)}", version=VERSION, worker_id=WORKER, prompt_ids=[1] * (1 + k))
        t.feedback_latency_s = 0.5
        if with_parts:
            t.reward_parts = [RewardPart("p", 0.5, 1.0)]
        out.append(t)
    return out


damage = st.one_of(
    st.tuples(st.just("bytes"), st.sampled_from(sorted(POKES)), st.binary(max_size=40)),
    st.tuples(
        st.just("poke"), st.sampled_from(sorted(POKES)), st.integers(0, 7), st.integers(0, 4)
    ),
    st.tuples(st.just("strings"), st.sampled_from(STRINGS), st.sampled_from(["+", "-", "", "L"])),
    st.tuples(st.just("none")),
)


def damaged(cols, op) -> None:
    kind = op[0]
    if kind == "bytes":
        setattr(cols, op[1], op[2])
    elif kind == "poke":
        fmt, values = POKES[op[1]]
        blob = bytearray(getattr(cols, op[1]))
        width = struct.calcsize(fmt)
        if len(blob) >= width:
            at = (op[2] % (len(blob) // width)) * width
            blob[at : at + width] = struct.pack(fmt, values[op[3] % len(values)])
            setattr(cols, op[1], bytes(blob))
    elif kind == "strings":
        column = getattr(cols, op[1])
        if op[2] == "+":
            column.append("extra")
        elif op[2] == "-" and len(column):
            del column[-1]
        elif len(column):
            column[0] = "" if op[2] == "" else "x" * 300


@settings(
    max_examples=int(150 * SCALE),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(n=st.integers(1, 4), with_parts=st.booleans(), op=damage)
def test_a_damaged_column_gets_a_verdict_for_every_row(ingest, n, with_parts, op):
    batch = batch_to_columns(1, rows(n, with_parts))
    damaged(batch.columns, op)
    n_rows = len(batch.columns.id)
    raw = RawStream(ingest.channel, trajectory_pb2.Ack)
    try:
        raw.send(HELLO.SerializeToString())
        credits = 0
        while credits < n_rows:
            ack = raw.next()
            assert isinstance(ack, trajectory_pb2.Ack) and ack.batch_seq == 0, ack
            credits += ack.credits
        raw.send(batch.SerializeToString())
        ack = raw.answer()
    finally:
        raw.close()
    assert not (isinstance(ack, tuple) and ack[0] in BAD_CODES), ack
    assert isinstance(ack, trajectory_pb2.Ack) and ack.batch_seq == 1, (op, ack)
    named = len(ack.duplicate) + len(ack.rejected)
    sent = [SimpleNamespace(id=i) for i in batch.columns.id]
    accepted = accepted_ids(ack, sent) if ack.accepted_rest else list(ack.accepted)
    ACCEPTED.update(accepted)
    assert len(accepted) + named == n_rows, (op, ack)  # exactly one verdict per row
    for r in ack.rejected:
        assert REASON.match(r.reason), (op, r.reason)
    if op[0] == "none":
        assert len(accepted) == n_rows, ack
