"""Bad input against the gRPC faces: the gateway's FeedbackService and the score server.

Raw bytes go through a channel's `unary_unary` with identity serializers, so a request need
not be a valid message. Every refusal is a clear code (INVALID_ARGUMENT naming the field,
UNAUTHENTICATED, NOT_FOUND; RESOURCE_EXHAUSTED over the size cap), never INTERNAL or UNKNOWN;
it is counted, leaves the store as it was, and both servers keep answering health SERVING.
"""

from __future__ import annotations

import math
import os
import socket

import grpc
import pytest
from fuzz_testutil import MAX_BYTES, SEED_PENDING, TOKEN, errors, n_errors, snapshot, start_gateway
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rewardloop.feedback.gateway.score_server import ScoreServer
from rewardloop.pb import feedback_pb2 as pb

SCALE = float(os.environ.get("REWARDLOOP_FUZZ_SCALE", "1"))
FUZZ = settings(
    max_examples=int(150 * SCALE),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
METHODS = ["Publish", "ListPending", "SubmitRating", "Collect", "Score"]
OK, BAD, UNAUTH = (
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.UNAUTHENTICATED,
)
NOT_FOUND, TOO_BIG = grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED
UNIMPLEMENTED = grpc.StatusCode.UNIMPLEMENTED


class Raw:
    """Calls FeedbackService methods with raw request bytes on one channel."""

    def __init__(self, address: str, token: str):
        self.channel = grpc.insecure_channel(address)
        self.token = token

    def call(self, method: str, data: bytes, token: str | None = "") -> tuple:
        token = self.token if token == "" else token
        md = [("authorization", f"Bearer {token}")] if token is not None else None
        fn = self.channel.unary_unary(f"/rewardloop.pb.FeedbackService/{method}")
        try:
            return OK, fn(data, metadata=md, timeout=10)
        except grpc.RpcError as exc:
            return exc.code(), exc.details()

    def serving(self) -> bool:
        stub = health_pb2_grpc.HealthStub(self.channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        return reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    g = start_gateway(tmp_path_factory.mktemp("grpc-fuzz"))
    g.raw = Raw(g.grpc._server.address, TOKEN)
    yield g
    assert errors(g).get("internal", 0) == 0, errors(g)
    g.stop()


@pytest.fixture(scope="module")
def score():
    server = ScoreServer(lambda p, c, m: [float(len(x)) for x in c], token="tok").start()
    server.raw = Raw(server._server.address, "tok")
    yield server
    server.stop()


def score_errors(server) -> int:
    return sum(server.stats()["request_errors"].values())


def invalid_utf8(msg, field: str) -> bytes:
    """`msg` serialized with the string `field` replaced by bytes that are not UTF-8."""
    setattr(msg, field, "ZZZZZ")
    return msg.SerializeToString().replace(b"ZZZZZ", b"\xff\xfe\xfd\xfc\xc0")


def rating(**kw) -> bytes:
    fields = {"item_id": SEED_PENDING, "rater": "r-1", "value": 1.0, **kw}
    return pb.SubmitRatingRequest(**fields).SerializeToString()


VALID_RATING = rating()
# fmt: off
CASES = {  # name: (method, bytes, token, code, field)
    "garbage": ("SubmitRating", b"\xff\xff\xff\xff", "", BAD, "request"),
    "truncated": ("SubmitRating", VALID_RATING[:-3], "", BAD, "request"),
    "invalid utf-8 item_id": ("SubmitRating", invalid_utf8(pb.SubmitRatingRequest(), "item_id"), "", BAD, "request"),
    "invalid utf-8 publisher": ("Collect", invalid_utf8(pb.CollectRequest(), "publisher"), "", BAD, "request"),
    "garbage publish": ("Publish", b"\x0a\x05\x0a\x03abc\xff", "", BAD, "request"),
    "garbage list": ("ListPending", b"\x08", "", BAD, "request"),
    "wrong wire type": ("SubmitRating", b"\x08\x01", "", BAD, "item_id"),
    "garbage, no token": ("SubmitRating", b"\xff\xff", None, UNAUTH, None),
    "no token": ("SubmitRating", VALID_RATING, None, UNAUTH, None),
    "wrong token": ("SubmitRating", VALID_RATING, "wrong", UNAUTH, None),
    "non-ascii-looking token": ("ListPending", b"", "t\\xc3\\xb6k", UNAUTH, None),
    "value NaN": ("SubmitRating", rating(value=math.nan), "", BAD, "value"),
    "value 2": ("SubmitRating", rating(value=2.0), "", BAD, "value"),
    "stars 9": ("SubmitRating", rating(stars=9), "", BAD, "stars"),
    "rater an e-mail": ("SubmitRating", rating(rater="ana@example.com"), "", BAD, "rater"),
    "empty rater": ("SubmitRating", rating(rater=""), "", BAD, "rater"),
    "unknown item": ("SubmitRating", rating(item_id="nope"), "", NOT_FOUND, None),
    "limit 5000": ("ListPending", pb.ListPendingRequest(limit=5000).SerializeToString(), "", BAD, "limit"),
    "limit 2**32-1": ("Collect", pb.CollectRequest(publisher="p", limit=2**32 - 1).SerializeToString(), "", BAD, "limit"),
    "empty publisher": ("Collect", pb.CollectRequest().SerializeToString(), "", BAD, "publisher"),
    "bad rater filter": ("ListPending", pb.ListPendingRequest(rater="a b").SerializeToString(), "", BAD, "rater"),
    "expires_at inf": ("Publish", pb.PublishRequest(items=[pb.FeedbackItem(id="n1", expires_at=math.inf)]).SerializeToString(), "", BAD, "items[0].expires_at"),
    "empty item id": ("Publish", pb.PublishRequest(items=[pb.FeedbackItem(prompt="x")]).SerializeToString(), "", BAD, "items[0].id"),
    "65 metadata entries": ("Publish", pb.PublishRequest(items=[pb.FeedbackItem(id="n1", metadata={str(i): "v" for i in range(65)})]).SerializeToString(), "", BAD, "items[0].metadata"),
}
# fmt: on


@pytest.mark.parametrize("name", list(CASES))
def test_hand_written_bad_messages(gw, name):
    method, data, token, code, field = CASES[name]
    before, counted = snapshot(gw), n_errors(gw)
    got, details = gw.raw.call(method, data, token)
    assert got == code, (got, details)
    if field is not None:
        assert details.startswith(f"{field}: "), details
    assert n_errors(gw) == counted + 1, errors(gw)
    assert snapshot(gw) == before and gw.raw.serving()
    assert gw.raw.call("ListPending", b"")[0] == OK


def test_oversized_message_is_refused_and_the_gateway_lives_on(gw):
    before = snapshot(gw)
    got, _ = gw.raw.call("SubmitRating", rating(rater="r" * (MAX_BYTES + 1)))
    assert got == TOO_BIG  # refused by gRPC itself before the servicer, so not counted
    assert snapshot(gw) == before and gw.raw.serving()


def test_connections_dropped_mid_message(gw, score):
    for port in (gw.grpc.port, score.port):
        for data in (
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04",
            b"\x16\x03\x01\x00",
            b"GET /",
        ):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(data)
    assert gw.raw.serving() and score.raw.serving()
    assert gw.raw.call("ListPending", b"")[0] == OK


def check_generated(gw, method: str, data: bytes, token: str | None = "") -> None:
    before, counted = snapshot(gw), n_errors(gw)
    got, details = gw.raw.call(method, data, token)
    if method == "Score":  # the gateway does not score; a bad message is still refused first
        assert got in (UNIMPLEMENTED, BAD, UNAUTH), (got, details)
        return
    assert got in (OK, BAD, UNAUTH, NOT_FOUND), (got, details, data[:100])
    if got != OK:
        assert n_errors(gw) == counted + 1 and snapshot(gw) == before, (got, details)


@FUZZ
@given(st.sampled_from(METHODS), st.binary(max_size=200))
def test_generated_bytes_against_the_gateway(gw, method, data):
    check_generated(gw, method, data)


TEXT = st.text(max_size=10) | st.sampled_from([SEED_PENDING, "r-1", "p", ""])
NUMBER = st.floats(allow_nan=True, allow_infinity=True)
FLOAT32 = st.floats(allow_nan=True, allow_infinity=True, width=32)
UINT32 = st.integers(0, 2**32 - 1)
MESSAGES = st.one_of(
    st.builds(
        lambda **kw: ("SubmitRating", pb.SubmitRatingRequest(**kw)),
        item_id=TEXT,
        value=FLOAT32,
        rater=TEXT,
        idempotency_key=TEXT,
        stars=UINT32,
    ),
    st.builds(lambda **kw: ("ListPending", pb.ListPendingRequest(**kw)), limit=UINT32, rater=TEXT),
    st.builds(
        lambda **kw: ("Collect", pb.CollectRequest(**kw)),
        publisher=TEXT,
        ack_ids=st.lists(TEXT, max_size=3),
        limit=UINT32,
    ),
    st.builds(
        lambda items, publisher: ("Publish", pb.PublishRequest(items=items, publisher=publisher)),
        items=st.lists(
            st.builds(
                pb.FeedbackItem,
                id=TEXT,
                prompt=TEXT,
                completion=TEXT,
                expires_at=NUMBER,
                metadata=st.dictionaries(TEXT, TEXT, max_size=3),
            ),
            max_size=3,
        ),
        publisher=TEXT,
    ),
)


@FUZZ
@given(MESSAGES, st.integers(0, 3), st.binary(max_size=4))
def test_generated_messages_against_the_gateway(gw, named, flip, junk):
    """Typed but wrong values, sometimes with bytes flipped or appended after serializing."""
    method, msg = named
    data = msg.SerializeToString()
    if flip == 1 and data:
        data = data[:-1] + bytes([data[-1] ^ 0x80])
    elif flip == 2:
        data += junk
    check_generated(gw, method, data)


@FUZZ
@given(st.sampled_from(METHODS), st.binary(max_size=200), st.sampled_from(["", None, "bad"]))
def test_generated_bytes_against_the_score_server(score, method, data, token):
    counted = score_errors(score)
    got, details = score.raw.call(method, data, token)
    allowed = {OK, BAD} if method == "Score" else {UNIMPLEMENTED, BAD}
    if token != "":
        allowed = {UNAUTH} if method == "Score" else allowed | {UNAUTH}
    assert got in allowed, (method, got, details)
    if got in (BAD, UNAUTH):
        assert score_errors(score) == counted + 1
        assert got != BAD or details.startswith("request: is not a valid"), details


def test_score_server_hand_written(score):
    counted = score_errors(score)
    good = pb.ScoreRequest(items=[pb.ScoreItem(id="a", completion="abc")]).SerializeToString()
    assert score.raw.call("Score", b"\xff\xff")[0] == BAD
    assert score.raw.call("Score", good[:-1])[0] == BAD
    assert score.raw.call("Score", invalid_utf8(pb.ScoreItem(), "id"))[0] == BAD
    assert score.raw.call("Score", good, token=None)[0] == UNAUTH
    assert score.raw.call("Score", b"\xff", token="wrong")[0] == UNAUTH
    assert score_errors(score) == counted + 5
    got, reply = score.raw.call("Score", good)
    assert got == OK and list(pb.ScoreResponse.FromString(reply).rewards) == [3.0]
    assert score.raw.serving()
