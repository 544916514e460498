"""Bad input against the real WeightServer (WeightService.Subscribe on 127.0.0.1:0, a token set).

Hypothesis draws SubscribeRequests over the whole int64 range of `have_version` (negative,
older, current, future) with and without `once`; a bounded random-bytes run sends damaged and
foreign messages. Each answer is one of what weights.proto allows: INVALID_ARGUMENT naming the
field (counted), nothing (a poll with nothing newer), or the latest version whole and verified
(`join_chunks` checks order, count, size and digest; the bytes equal what was published) --
never INTERNAL. Missing or wrong tokens are UNAUTHENTICATED and counted; subscriptions dropped
mid-version and long-polls cut off by their deadline give their slot back (the server keeps
all of `max_streams` for new callers); the registry is unchanged and a real WeightClient still
fetches the latest version. REWARDLOOP_FUZZ_SCALE=10 runs longer.
"""

from __future__ import annotations

import random
import threading

import grpc
import pytest
import torch
from grpc_fuzz_testutil import (
    BAD_CODES,
    COUNTS,
    SCALE,
    TOKEN,
    budget,
    metadata,
    mutate,
    new_channel,
    report,
    serving,
    wait_for,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rewardloop.actors.weight_client import WeightClient
from rewardloop.auth import ServerSecurity
from rewardloop.errors import RewardLoopError
from rewardloop.learner.weight_server import WeightServer
from rewardloop.pb import trajectory_pb2, weights_pb2
from rewardloop.weight_wire import SUBSCRIBE_METHOD, join_chunks, state_dict_to_bytes

LATEST, MAX_STREAMS, FOLLOW_S = 2, 4, 0.05
BAD = grpc.StatusCode.INVALID_ARGUMENT
FUZZ = settings(
    max_examples=int(150 * SCALE),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def state(v: int) -> dict[str, torch.Tensor]:
    return {"w": torch.arange(300, dtype=torch.float32) + v, "b": torch.full((7,), float(v))}


@pytest.fixture(scope="module")
def weights():
    server = WeightServer(chunk_bytes=256, max_streams=MAX_STREAMS, security=ServerSecurity(TOKEN))
    server.start()
    for v in range(LATEST + 1):
        server.publish(v, state(v))
    server.channel = new_channel(server.address)
    server.expected = state_dict_to_bytes(state(LATEST))
    yield server
    try:
        final_checks(server)
    finally:
        report("weights", server.stats())
        server.channel.close()
        server.stop(grace_s=0.5)


def final_checks(server: WeightServer) -> None:
    """Registry unchanged, serving, and a real client gets the latest version intact."""
    stats = server.stats()
    assert (server.latest_version, stats["published"]) == (LATEST, LATEST + 1), stats
    assert serving(server.channel)
    got = {}

    def fetched() -> bool:  # slots of the calls just cancelled are freed a moment later
        with WeightClient(server.address, timeout_s=10.0, token=TOKEN) as client:
            try:
                got.update(zip(("version", "state"), client.poll(-1), strict=True))
            except RewardLoopError as exc:
                assert "RESOURCE_EXHAUSTED" in str(exc), exc
        return bool(got)

    assert wait_for(fetched)
    version, got = got["version"], got["state"]
    assert version == LATEST and set(got) == set(state(LATEST))
    assert all(torch.equal(got[k], v) for k, v in state(LATEST).items())


def subscribe(server, data: bytes, timeout_s: float, token: str | None = TOKEN):
    """Raw call: (status code, details, the serialized chunks received before the end)."""
    COUNTS["weights"] += 1
    fn = server.channel.unary_stream(
        SUBSCRIBE_METHOD, request_serializer=None, response_deserializer=None
    )
    chunks: list[bytes] = []
    call = fn(data, timeout=timeout_s, metadata=metadata(token))
    try:
        for chunk in call:
            chunks.append(chunk)
    except grpc.RpcError as exc:
        return exc.code(), exc.details(), chunks
    return grpc.StatusCode.OK, "", chunks


def check_answer(server, request: weights_pb2.SubscribeRequest | None, answer) -> None:
    """What weights.proto allows for `request` (None: the bytes did not decode)."""
    code, details, chunks = answer
    assert code not in BAD_CODES, answer[:2]
    if request is None:
        assert (code, details.split(":", 1)[0], chunks) == (BAD, "request", []), answer[:2]
        return
    if request.have_version < -1:
        assert (code, details.split(":", 1)[0], chunks) == (BAD, "have_version", []), answer[:2]
        return
    if request.once:
        assert code == grpc.StatusCode.OK or (
            code == grpc.StatusCode.DEADLINE_EXCEEDED and request.wait_ms
        ), answer[:2]
    else:
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED, answer[:2]  # follows until the deadline
    if request.have_version >= LATEST:
        assert chunks == [], "nothing newer than what the caller has"
        return
    heads = [weights_pb2.WeightChunk.FromString(c) for c in chunks]
    assert [h.index for h in heads] == list(range(len(heads)))  # in order, none skipped
    assert {h.version for h in heads} <= {LATEST}
    if request.once or len(heads) == (heads[0].count if heads else -1):  # the whole version
        version, payload = join_chunks(chunks)  # order, count, size and digest
        assert version == LATEST and bytes(payload) == server.expected
    # else: a follow cut off by its deadline mid-version (a loaded machine): a clean prefix


versions = st.one_of(
    st.integers(-1, LATEST + 2),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([-2, -(2**63), 2**63 - 1]),
)


@FUZZ
@given(have=versions, once=st.booleans(), wait_ms=st.sampled_from([0, 0, 1, 30]))
def test_every_subscribe_request_gets_what_the_proto_says(weights, have, once, wait_ms):
    request = weights_pb2.SubscribeRequest(have_version=have, once=once, wait_ms=wait_ms)
    before = weights.stats().get("invalid_requests", 0)
    answer = subscribe(weights, request.SerializeToString(), deadline(request))
    check_answer(weights, request, answer)
    assert weights.stats().get("invalid_requests", 0) - before == (have < -1)


def deadline(request: weights_pb2.SubscribeRequest | None) -> float:
    """A follow runs until its deadline (kept short); every other answer comes at once (the
    bound only has to outlast a loaded machine)."""
    follows = request is not None and request.have_version >= -1 and not request.once
    return FOLLOW_S if follows else 10.0


def decoded(data: bytes) -> weights_pb2.SubscribeRequest | None:
    try:
        return weights_pb2.SubscribeRequest.FromString(data)
    except Exception:  # noqa: BLE001 - the server must call these bytes no message too
        return None


def test_random_bytes_and_foreign_messages(weights):
    rng = random.Random(7)
    foreign = [
        trajectory_pb2.TrajectoryBatch(batch_seq=1, hello={"worker_id": "w"}).SerializeToString(),
        trajectory_pb2.Ack(batch_seq=3, accepted=["a"], credits=7).SerializeToString(),
        weights_pb2.WeightChunk(version=9, data=b"\0" * 40, digest="x").SerializeToString(),
        b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # have_version: a 10-byte varint, -1
        b"\x18\xff\xff\xff\xff\x0f\x10\x01",  # wait_ms 2**32-1 with once: bounded by the deadline
    ]
    valid = weights_pb2.SubscribeRequest(have_version=0, once=True).SerializeToString()
    before = weights.stats().get("invalid_requests", 0)
    refused = 0
    for i in budget(seconds=5.0, count=800):
        data = foreign[i % len(foreign)] if i % 3 == 0 else mutate(rng, valid)
        request = decoded(data)
        answer = subscribe(weights, data, deadline(request))
        check_answer(weights, request, answer)
        refused += answer[0] == BAD
    assert refused > 0
    assert weights.stats()["invalid_requests"] - before == refused


@pytest.mark.parametrize("token", [None, "wrong", "", "t\\xc3\\xb6k", "x" * 8000])
def test_missing_or_wrong_tokens_are_unauthenticated_and_counted(weights, token):
    before = weights.stats()["unauthenticated"]
    request = weights_pb2.SubscribeRequest(have_version=-1, once=True).SerializeToString()
    answers = []  # a slot of a call that just ended is freed a moment later: ask again then
    busy = grpc.StatusCode.RESOURCE_EXHAUSTED
    assert wait_for(
        lambda: answers.append(subscribe(weights, request, 5, token)) or answers[-1][0] != busy
    )
    code, details, chunks = answers[-1]
    assert (code, chunks) == (grpc.StatusCode.UNAUTHENTICATED, []) and "bearer token" in details
    # each attempt's token was checked and counted (one refused busy, a loaded machine, too)
    assert weights.stats()["unauthenticated"] == before + len(answers)


def open_follows(server, n: int):
    """(channel, calls): `n` concurrent follow subscriptions, each past its first chunk, or
    None when one was refused (slots of calls that just ended are freed a moment later)."""
    channel = new_channel(server.address)
    fn = channel.unary_stream(SUBSCRIBE_METHOD, request_serializer=None, response_deserializer=None)
    request = weights_pb2.SubscribeRequest(have_version=-1).SerializeToString()
    calls = [fn(request, timeout=30, metadata=metadata()) for _ in range(n)]
    try:
        for call in calls:
            COUNTS["weights"] += 1
            next(call)  # mid-version: one chunk of several read
        return channel, calls
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc
        for call in calls:
            call.cancel()
        channel.close()
        return None


def open_all(server):
    """All MAX_STREAMS follow subscriptions open, once the slots of ended calls are free."""
    opened = []
    assert wait_for(lambda: opened.append(open_follows(server, MAX_STREAMS)) or opened[-1])
    return opened[-1]


def test_calls_that_expire_before_they_get_a_thread_give_no_slot_away(weights):
    """A flood of 2 ms deadlines: many calls end while queued behind busy threads, before
    their handler ever runs. A slot taken for them when grpc looked up the handler was never
    given back (found here: MAX_STREAMS slots stuck, every later call refused for good)."""
    request = weights_pb2.SubscribeRequest(have_version=LATEST).SerializeToString()

    def flood() -> None:
        for _ in range(int(60 * SCALE)):
            subscribe(weights, request, 0.002)

    threads = [threading.Thread(target=flood) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    channel, calls = open_all(weights)  # every slot came back
    for call in calls:
        call.cancel()
    channel.close()


def test_dropped_subscriptions_and_cut_long_polls_give_their_slots_back(weights):
    for round_ in range(3):
        channel, calls = open_all(weights)
        if round_ == 0:
            for call in calls:
                call.cancel()
        channel.close()  # rounds 1 and 2: the connection just goes away
    long_poll = weights_pb2.SubscribeRequest(have_version=LATEST, once=True, wait_ms=2**32 - 1)
    assert wait_for(lambda: cut_long_polls(weights, long_poll.SerializeToString()))
    channel, calls = open_all(weights)
    for call in calls:
        call.cancel()
    channel.close()
    assert serving(weights.channel)


def cut_long_polls(server, request: bytes) -> bool:
    """MAX_STREAMS long-polls at once, each cut off by its 0.3 s deadline (True when all were
    admitted and ended DEADLINE_EXCEEDED, none hung)."""
    answers: list = []
    threads = [
        threading.Thread(target=lambda: answers.append(subscribe(server, request, 0.3)))
        for _ in range(MAX_STREAMS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    codes = {a[0] for a in answers}
    assert codes <= {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
    return codes == {grpc.StatusCode.DEADLINE_EXCEEDED}
