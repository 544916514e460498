"""Bad input against the real IngestServer (TrajectoryService.Stream on 127.0.0.1:0, a token set).

Hypothesis builds batches that mix good trajectories with every way a field can be wrong
(lengths, NaN / inf, token ids out of range, negative / stale / future versions, a foreign
worker id, duplicates); each trajectory's verdict is held to an independent restatement of
trajectory.proto (`grpc_fuzz_testutil.bad_fields`). A bounded random-bytes run then sends
damaged and foreign messages as the first message and after the hello. Protocol faults (no
hello, a second hello, batch_seq 0, bytes that are no TrajectoryBatch), missing and wrong
tokens, and streams dropped mid-message get a clear status, are counted, and the server keeps
serving: health answers, a real TrajectoryClient still gets through, the buffer holds only
valid trajectories and every stream's credits come back. REWARDLOOP_FUZZ_SCALE=10 runs longer.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from grpc_fuzz_testutil import BAD_CODES, SCALE, bad_fields, budget, mutate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ingest_fuzz_testutil import (
    BAD,
    IDS,
    MAX_TOKENS,
    RULES,
    STALENESS,
    VERSION,
    WORKER,
    RawStream,
    a_good_client_gets_through,
    open_stream,
    serve,
)
from ingest_testutil import VOCAB, traj

from rewardloop.pb import feedback_pb2, trajectory_pb2, weights_pb2
from rewardloop.wire import pack_ids, pack_logprobs, trajectory_to_proto

FUZZ = settings(
    max_examples=int(25 * SCALE),  # per field
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
ACCEPTED: set[str] = set()


@pytest.fixture(scope="module")
def ingest():
    yield from serve(ACCEPTED)


# ---- hypothesis: one verdict per trajectory, held to the proto's rules -------------------

f32 = st.floats(width=32, allow_nan=True, allow_infinity=True)
good_ids = st.lists(st.integers(0, VOCAB - 1), min_size=1, max_size=6).map(pack_ids)
bad_ids = st.one_of(
    st.binary(max_size=30),  # any length, any values
    st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=4).map(pack_ids),
    st.just(pack_ids([1] * (MAX_TOKENS + 1))),  # past learner.max_trajectory_tokens
)
FIELDS = {  # field: (a good value, any value: good or bad)
    "id": (st.just("fresh"), st.sampled_from(["empty", "long", "dup"])),
    "group": (st.just("fresh"), st.just("empty")),
    "prompt": (good_ids, bad_ids),
    "completion": (good_ids, bad_ids),
    "logprobs": (st.just("match"), st.one_of(st.lists(f32, max_size=6), st.binary(max_size=24))),
    "reward": (st.floats(-10, 10, width=32), f32),
    "version": (
        st.integers(VERSION - STALENESS, VERSION),
        st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-3, VERSION + 3)),
    ),
    "group_size": (st.sampled_from([0, 1]), st.sampled_from([-1, -(2**31)])),
    "worker": (st.sampled_from(["", WORKER]), st.text(min_size=1, max_size=4)),
    "parts": (
        st.lists(st.tuples(st.text(max_size=5), st.floats(-9, 9), st.floats(0, 1)), max_size=2),
        st.lists(st.tuples(st.text(max_size=5), f32, f32), min_size=1, max_size=2),
    ),
    "latency": (st.floats(0, 100), st.floats(allow_nan=True)),
    "rater": (st.text(max_size=8), st.text(max_size=8)),
}


@st.composite
def fields(draw, field: str | None = None) -> dict:
    """A good trajectory's fields with `field` (and maybe one more) drawn from anything."""
    broken = {field, draw(st.sampled_from([None, *sorted(FIELDS)]))}
    return {k: draw(FIELDS[k][k in broken]) for k in FIELDS}


def batches(field: str):
    """A batch whose first trajectory has `field` drawn from anything; others mixed in."""
    return st.tuples(fields(field), st.lists(fields(), max_size=3)).map(lambda b: [b[0], *b[1]])


def build(f: dict) -> trajectory_pb2.Trajectory:
    n = next(IDS)
    msg = trajectory_pb2.Trajectory(
        id={"fresh": f"t{n}", "empty": "", "long": "x" * 257}.get(f["id"])
        or (sorted(ACCEPTED)[n % len(ACCEPTED)] if ACCEPTED else f"t{n}"),
        group_id=f"g{n}" if f["group"] == "fresh" else "",
        prompt_ids=f["prompt"],
        completion_ids=f["completion"],
        reward=f["reward"],
        policy_version=f["version"],
        worker_id=f["worker"],
        group_size=f["group_size"],
    )
    lp = f["logprobs"]
    if lp == "match":
        n_lp = len(f["completion"]) // 4
        lp = pack_logprobs(-np.linspace(0.01, 3.0, n_lp)) if len(f["completion"]) % 4 == 0 else b""
    msg.behavior_logprobs = lp if isinstance(lp, bytes) else pack_logprobs(lp)
    for name, value, weight in f["parts"]:
        msg.reward_parts.add(name=name, value=value, weight=weight)
    msg.feedback.latency_s, msg.feedback.rater = f["latency"], f["rater"]
    return msg


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_every_trajectory_gets_its_own_verdict_naming_the_field(ingest, field):
    @FUZZ
    @given(batch=batches(field))
    def check(batch):
        one_batch(ingest, batch)

    check()


ADMIT_LEVEL = {"policy_version", "worker_id"}
"""Fields judged after decoding, by the learner (a known id is a duplicate before these)."""


def one_batch(ingest, batch: list[dict]) -> None:
    msgs = [build(f) for f in batch]
    before = ingest.stats()["rejected_total"]
    raw = open_stream(ingest, need=len(msgs))
    try:
        raw.send(trajectory_pb2.TrajectoryBatch(batch_seq=1, trajectories=msgs).SerializeToString())
        ack = raw.answer()
    finally:
        raw.close()
    assert isinstance(ack, trajectory_pb2.Ack) and ack.batch_seq == 1, ack
    known = set(ACCEPTED)
    ACCEPTED.update(ack.accepted)  # what the buffer holds now, whatever the checks below say
    rejected = [(r.id, r.reason) for r in ack.rejected]
    seen_in_batch: set[str] = set()
    for msg in msgs:
        bad = bad_fields(msg, **RULES)
        seen = msg.id in known or msg.id in seen_in_batch
        reasons = [reason for rid, reason in rejected if rid == ("" if "id" in bad else msg.id)]
        if seen and not bad:
            assert msg.id in ack.duplicate, (msg, ack)
        elif seen and bad <= ADMIT_LEVEL and msg.policy_version >= 0:
            # a decoded known id: a duplicate, or refused for the version or worker it now names
            # (a negative version never decodes); never accepted twice
            assert msg.id in ack.duplicate or any(r.split(":", 1)[0] in bad for r in reasons)
        elif not bad:
            assert msg.id in ack.accepted, (msg, ack)
            seen_in_batch.add(msg.id)
        else:
            assert reasons, (msg, bad, ack)
            assert any(r.split(":", 1)[0] in bad for r in reasons), (bad, reasons)
    assert set(ack.accepted) <= {m.id for m in msgs if not bad_fields(m, **RULES)}
    assert ingest.stats()["rejected_total"] - before == len(ack.rejected)


# ---- bounded random bytes ---------------------------------------------------------------


def valid_batch_bytes(seq: int) -> bytes:
    t = trajectory_to_proto(traj(f"r{next(IDS)}", version=VERSION, worker_id=WORKER))
    return trajectory_pb2.TrajectoryBatch(batch_seq=seq, trajectories=[t]).SerializeToString()


def is_hello(data: bytes) -> bool:
    """`data` decodes as a proper hello (a mutation can make one, rarely)."""
    try:
        first = trajectory_pb2.TrajectoryBatch.FromString(data)
    except Exception:  # noqa: BLE001 - not even a message
        return False
    return first.HasField("hello") and bool(first.hello.worker_id) and not first.trajectories


def check_answer(answer, data: bytes) -> None:
    """An Ack whose accepted ids are valid, or a clear INVALID_ARGUMENT naming a field."""
    if isinstance(answer, trajectory_pb2.Ack):
        batch = trajectory_pb2.TrajectoryBatch.FromString(data)  # it did decode
        for t in batch.trajectories:
            if t.id in answer.accepted:
                assert not bad_fields(t, **RULES), t
        ACCEPTED.update(answer.accepted)
        return
    code, details = answer
    assert code not in BAD_CODES, answer
    assert code == BAD, answer
    assert details.split(":", 1)[0] in ("request", "hello", "hello.worker_id", "batch_seq"), answer


def test_random_bytes_before_and_after_the_hello(ingest):
    rng = random.Random(12)
    foreign = [
        trajectory_pb2.Ack(batch_seq=3, accepted=["a"], credits=7).SerializeToString(),
        weights_pb2.WeightChunk(version=1, data=b"\0" * 40, digest="x").SerializeToString(),
        weights_pb2.SubscribeRequest(have_version=2, once=True).SerializeToString(),
        feedback_pb2.SubmitRatingRequest(item_id="i", value=1.0).SerializeToString(),
        trajectory_to_proto(traj("bare")).SerializeToString(),  # a Trajectory, not a batch
    ]
    errors_before = ingest.stats().get("protocol_errors", 0)
    refused = 0
    for i in budget(seconds=5.0, count=600):
        source = foreign[i % len(foreign)] if i % 4 == 0 else valid_batch_bytes(1 + i % 3)
        data = mutate(rng, source) if i % 4 else source
        after_hello = i % 2 == 0
        raw = open_stream(ingest) if after_hello else RawStream(ingest.channel, trajectory_pb2.Ack)
        try:
            raw.send(data)
            answer = raw.answer() if after_hello else raw.next()
        finally:
            raw.close()
        if not after_hello and isinstance(answer, trajectory_pb2.Ack) and not is_hello(data):
            pytest.fail(f"a first message that is no hello was answered with an Ack: {data!r}")
        check_answer(answer, data)
        refused += not isinstance(answer, trajectory_pb2.Ack)
    assert refused > 0
    assert ingest.stats()["protocol_errors"] - errors_before == refused


def test_a_good_client_still_gets_through(ingest):
    """After all of the above (pytest runs this file top to bottom), the real worker client."""
    ACCEPTED.update(a_good_client_gets_through(ingest))
