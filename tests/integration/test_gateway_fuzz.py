"""Bad input against the gateway's HTTP face: a clear 4xx naming the field, counted, state kept.

A real gateway on 127.0.0.1:0 (token, temp SQLite store, one pending and one rated item)
takes hand-written cases for every known way to get a 500 and then hypothesis-generated
bodies, headers, query strings and raw bytes on every route. After each request: never a
5xx; every 4xx counted (aiohttp's own parser's refusals too); no `internal` errors; the store
unchanged by every refused request; the gateway still serving. About 500 requests in a few
seconds; `REWARDLOOP_FUZZ_SCALE=20` runs twenty times as many generated ones.
"""

from __future__ import annotations

import json
import os
import urllib.parse

import pytest
from fuzz_testutil import (
    MAX_BYTES,
    SEED_PENDING,
    Answer,
    drop_mid_body,
    errors,
    n_errors,
    raw_http,
    snapshot,
    start_gateway,
    still_serving,
    wait_for,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

JSON = (b"Content-Type", b"application/json")
FORM = (b"Content-Type", b"application/x-www-form-urlencoded")
MULTI = (b"Content-Type", b"multipart/form-data; boundary=xx")
SCALE = float(os.environ.get("REWARDLOOP_FUZZ_SCALE", "1"))
FUZZ = settings(
    max_examples=int(200 * SCALE),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    g = start_gateway(tmp_path_factory.mktemp("fuzz"))
    yield g
    assert errors(g).get("internal", 0) == 0, errors(g)
    g.stop()


def deep(n: int) -> bytes:
    return b'{"item_id": ' + b'{"a": ' * n + b"1" + b"}" * n + b"}"


def rating(**fields) -> bytes:
    return json.dumps({"item_id": SEED_PENDING, "rater": "r-1", "value": 1, **fields}).encode()


POST_RATE = (b"POST", b"/v1/ratings")
# fmt: off
CASES = {  # name: (method, target, headers, body, token, status, field)
    "surrogate item_id": (*POST_RATE, [JSON], rating(item_id="\ud800"), True, 400, "item_id"),
    "surrogate key": (*POST_RATE, [JSON], rating(idempotency_key="\udfff"), True, 400, "idempotency_key"),
    "surrogate prompt": (b"POST", b"/v1/publish", [JSON], b'{"items": [{"id": "n1", "prompt": "\\ud800"}]}', True, 400, "items[0].prompt"),
    "surrogate metadata key": (b"POST", b"/v1/publish", [JSON], b'{"items": [{"id": "n1", "metadata": {"\\udc80": "v"}}]}', True, 400, "items[0].metadata.<key>"),
    "surrogate ack id": (b"POST", b"/v1/collect", [JSON], b'{"publisher": "pub-1", "ack_ids": ["\\ud800"]}', True, 400, "ack_ids[0]"),
    "non-ascii bearer": (b"GET", b"/v1/pending", [], b"", "tök".encode(), 401, ""),
    "garbage-byte bearer": (b"GET", b"/v1/pending", [], b"", b"t\xff\xfek", 401, ""),
    "non-ascii cookie": (b"GET", b"/v1/pending", [(b"Cookie", "rl_token=tök".encode())], b"", None, 401, ""),
    "garbage cookie": (b"GET", b"/v1/pending", [(b"Cookie", b"rl_token=\xff\xfe")], b"", None, 401, ""),
    "garbage cookie on page": (b"GET", b"/rate", [(b"Cookie", b"rl_token=\xff")], b"", None, 401, None),
    "multipart, not multipart": (b"POST", b"/rate", [MULTI], b"not multipart", True, 400, None),
    "multipart, no boundary": (b"POST", b"/rate", [(b"Content-Type", b"multipart/form-data")], b"x", True, 400, None),
    "multipart file": (b"POST", b"/rate", [MULTI], b'--xx\r\nContent-Disposition: form-data; name="value"; filename="f"\r\n\r\n1\r\n--xx--\r\n', True, 400, None),
    "undecodable form": (b"POST", b"/rate", [FORM], b"\xff\xfe=\xff", True, 400, None),
    "oversized form": (b"POST", b"/rate", [FORM], b"v=" + b"1" * MAX_BYTES, True, 413, None),
    "deep array": (*POST_RATE, [JSON], b"[" * 50_000, True, 400, "body"),
    "deep object": (*POST_RATE, [JSON], deep(5000), True, 400, "body"),
    "nested past the limit": (*POST_RATE, [JSON], deep(40), True, 400, "item_id" + ".a" * 31),
    "5000-digit value": (*POST_RATE, [JSON], rating()[:-2] + b"9" * 5000 + b"}", True, 400, "value"),
    "1000-digit expires_at": (b"POST", b"/v1/publish", [JSON], b'{"items": [{"id": "n1", "expires_at": ' + b"9" * 1000 + b"}]}", True, 400, "items[0].expires_at"),
    "400-digit value": (*POST_RATE, [JSON], rating(value=10**400), True, 400, "value"),
    "rater a number": (*POST_RATE, [JSON], rating(rater=5), True, 400, "rater"),
    "rater a list": (*POST_RATE, [JSON], rating(rater=["r-1"]), True, 400, "rater"),
    "rater null": (*POST_RATE, [JSON], rating(rater=None), True, 400, "rater"),
    "value a string": (*POST_RATE, [JSON], rating(value="1"), True, 400, "value"),
    "value NaN": (*POST_RATE, [JSON], rating(value=float("nan")), True, 400, "value"),
    "stars a float": (*POST_RATE, [JSON], rating(stars=2.5), True, 400, "stars"),
    "publisher a float": (b"POST", b"/v1/publish", [JSON], b'{"items": [], "publisher": 1e400}', True, 400, "publisher"),
    "limit true": (b"POST", b"/v1/collect", [JSON], b'{"publisher": "pub-1", "limit": true}', True, 400, "limit"),
    "limit fullwidth digit": (b"GET", b"/v1/pending?limit=%EF%BC%91", [], b"", True, 400, "limit"),
    "limit 5000 digits": (b"GET", b"/v1/pending?limit=" + b"9" * 5000, [], b"", True, 400, "limit"),
    "bad gzip": (*POST_RATE, [JSON, (b"Content-Encoding", b"gzip")], rating(), True, 400, "body"),
    "bad gzip form": (b"POST", b"/rate", [FORM, (b"Content-Encoding", b"deflate")], b"value=1", True, 400, None),
    "not JSON": (*POST_RATE, [JSON], b"{'item_id': 1}", True, 400, "body"),
    "not an object": (*POST_RATE, [JSON], b"[1, 2]", True, 400, "body"),
    "oversized JSON": (*POST_RATE, [JSON], b" " * (MAX_BYTES + 1), True, 413, "body"),
    "unknown item": (*POST_RATE, [JSON], rating(item_id="nope"), True, 404, ""),
    "no token": (*POST_RATE, [JSON], rating(), None, 401, ""),
    "wrong token": (*POST_RATE, [JSON], rating(), b"wrong", 401, ""),
    "non-ascii Expect": (*POST_RATE, [JSON, (b"Expect", b"100-\xffcontinue")], rating(), True, 417, "Expect"),
    "Expect, unknown route": (b"GET", b"/nope", [(b"Expect", b"\xfe")], b"", True, 417, None),
    "unknown route": (b"GET", b"/v1/nothing", [], b"", True, 404, None),
    "wrong method": (b"GET", b"/v1/publish", [], b"", True, 405, None),
}
# fmt: on


def send(gw, method, target, headers, body, token, **kw) -> Answer:
    tok = {"token": token} if token is not True else {}
    return raw_http(gw.http.port, method, target, headers, body, **tok, **kw)


def check(gw, answer: Answer, before: tuple, counted_before: int, field: str | None) -> None:
    """The invariants of a refused request."""
    assert 400 <= answer.status < 500, (answer.status, answer.body[:300])
    assert n_errors(gw) == counted_before + 1, errors(gw)  # aiohttp's parser's refusals too
    if field is not None and answer.from_app and answer.status != 401:
        got = answer.json()
        assert got["field"] == field and field in got["error"], got
    assert snapshot(gw) == before


@pytest.mark.parametrize("name", list(CASES))
def test_hand_written_bad_requests(gw, name):
    method, target, headers, body, token, status, field = CASES[name]
    before, counted = snapshot(gw), n_errors(gw)
    answer = send(gw, method, target, headers, body, token)
    assert answer.status == status, (answer.status, answer.body[:300])
    assert answer.from_app, answer.headers
    check(gw, answer, before, counted, field)
    still_serving(gw)


def test_page_form_with_bad_values_says_invalid(gw):
    """A well-formed rating-page form with a bad value: 303 back to the page, counted."""
    before, counted = snapshot(gw), n_errors(gw)
    cookie = (b"Cookie", b"rl_rater=r-1")
    for body in (b"item_id=seed-pending&value=abc", b"item_id=seed-pending&stars=" + b"9" * 5000):
        answer = send(gw, b"POST", b"/rate", [FORM, cookie], body, True)
        assert answer.status == 303 and answer.headers["location"].endswith("msg=invalid")
    assert n_errors(gw) == counted + 2 and snapshot(gw) == before


def test_streams_dropped_mid_message(gw):
    before, counted = snapshot(gw), n_errors(gw)
    for target in (b"/v1/ratings", b"/v1/publish", b"/rate"):
        drop_mid_body(gw.http.port, target, declared=500, sent=b'{"item_id": "seed-')
    assert wait_for(lambda: n_errors(gw) >= counted + 3), errors(gw)
    assert snapshot(gw) == before
    still_serving(gw)


# ---- generated ----------------------------------------------------------------------------

SURROGATES = st.sampled_from(["\ud800", "\udfff", "a\udc80b"])
TEXT = st.text(max_size=12) | SURROGATES | st.sampled_from(["r-1", SEED_PENDING, "pub-1"])
SCALAR = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | TEXT
)
VALUE = st.recursive(
    SCALAR,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(TEXT, kids, max_size=3),
    max_leaves=8,
)
FIELDS = {
    b"/v1/ratings": ["item_id", "value", "stars", "rater", "idempotency_key"],
    b"/v1/publish": ["items", "publisher"],
    b"/v1/collect": ["publisher", "ack_ids", "limit"],
}
ITEM = st.fixed_dictionaries(
    {}, optional={k: VALUE for k in ("id", "prompt", "completion", "metadata", "expires_at")}
)


@st.composite
def json_request(draw):
    target = draw(st.sampled_from(sorted(FIELDS)))
    body = {k: draw(VALUE) for k in FIELDS[target] if draw(st.booleans())}
    if target == b"/v1/publish" and draw(st.booleans()):
        body["items"] = draw(st.lists(ITEM, max_size=3))
    raw = json.dumps(body).encode()
    if draw(st.integers(0, 9)) == 0:  # now and then a body cut or spliced with junk
        cut = draw(st.integers(0, len(raw)))
        raw = raw[:cut] + draw(st.binary(max_size=8))
    return target, raw


def run_one(gw, method, target, headers, body, token=True, **kw) -> Answer:
    """Send one generated request; refused ones must leave no trace but a counted error."""
    before, counted = snapshot(gw), n_errors(gw)
    answer = send(gw, method, target, headers, body, token, **kw)
    assert answer.status < 500, (answer.status, target, body[:200], answer.body[:300])
    if answer.status >= 400:
        check(gw, answer, before, counted, None)
        if answer.from_app and answer.status != 401 and target.startswith(b"/v1/"):
            got = answer.json()
            assert got["field"] and got["error"].startswith(got["field"]), got
    return answer


@FUZZ
@given(json_request())
def test_generated_json_bodies(gw, req):
    target, body = req
    run_one(gw, b"POST", target, [JSON], body)


HEADER_BYTES = st.binary(min_size=1, max_size=24).filter(
    lambda b: b"\r" not in b and b"\n" not in b
)
ROUTES = [(b"GET", b"/v1/pending"), (b"GET", b"/v1/stats"), (b"GET", b"/rate"), (b"POST", b"/rate")]
ROUTES += [(b"POST", t) for t in FIELDS]
ODD_ROUTES = [
    (b"PUT", b"/v1/ratings"),
    (b"DELETE", b"/rate"),
    (b"GET", b"/%ff"),
    (b"HEAD", b"/rate"),
]
EXTRA = st.tuples(
    st.sampled_from([b"Expect", b"Content-Encoding", b"Transfer-Encoding", b"Accept", b"Host"]),
    HEADER_BYTES,
)


@settings(FUZZ, max_examples=int(100 * SCALE))
@given(
    st.sampled_from(ROUTES + ODD_ROUTES),
    st.one_of(st.none(), HEADER_BYTES),
    st.one_of(st.none(), HEADER_BYTES),
    st.dictionaries(st.sampled_from(["limit", "rater", "scale", "msg", "token"]), TEXT, max_size=3),
    st.lists(EXTRA, max_size=2),
)
def test_generated_tokens_cookies_and_queries(gw, route, token, cookie, query, extra):
    """Tokens, cookies and other headers of any bytes, query strings of any text."""
    method, path = route
    q = urllib.parse.urlencode(query, errors="surrogatepass").encode()
    headers = [(b"Cookie", b"rl_token=" + cookie)] if cookie is not None else []
    headers += extra
    run_one(gw, method, path + (b"?" + q if q else b""), headers, b"", token=token)


CONTENT_TYPES = st.sampled_from(
    [
        b"application/json",
        b"application/x-www-form-urlencoded",
        b"multipart/form-data",
        b"multipart/form-data; boundary=xx",
        b"text/plain; charset=nope",
        b"\xff\xfe",
        b"",
    ]
)


@settings(FUZZ, max_examples=int(150 * SCALE))
@given(st.sampled_from(ROUTES), CONTENT_TYPES, st.binary(max_size=300), st.booleans())
def test_generated_raw_bodies(gw, route, ctype, body, chunked):
    method, path = route
    headers = [(b"Content-Type", ctype)]
    if chunked:
        headers.append((b"Transfer-Encoding", b"chunked"))
        body = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n" if body else b"0\r\n\r\n"
    run_one(gw, method, path, headers, body, content_length=not chunked)


def test_still_serving_after_the_fuzz(gw):
    still_serving(gw)
    assert errors(gw).get("internal", 0) == 0


def test_a_real_bug_is_a_logged_counted_500(tmp_path, caplog):
    """The error middleware hides nothing: an unexpected exception is a 500, logged, `internal`."""
    g = start_gateway(tmp_path)
    try:
        g.core.pending = lambda *a: 1 / 0
        answer = raw_http(g.http.port, b"GET", b"/v1/pending")
        assert answer.status == 500 and answer.json() == {
            "error": "internal error: ZeroDivisionError"
        }
        assert errors(g) == {"internal": 1}
        assert "internal error on GET /v1/pending" in caplog.text
    finally:
        g.stop()
