"""The response log survives a SIGKILL of the server, a rating given after the restart is
joined to the response served before it, and feedback is idempotent across the restart."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from serve_testutil import KEY, post

from rewardloop.serving.response_log import ResponseLog

openai = pytest.importorskip("openai")
SCRIPT = Path(__file__).with_name("serve_process.py")


def _start(out: Path) -> tuple[subprocess.Popen, str]:
    (out / "url").unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, str(SCRIPT), str(out), "feedback.wait_s=3600"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 180
    while not (out / "url").exists():
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("server did not start within 180 s")
        time.sleep(0.1)  # polling a file the child writes, with a deadline
    return proc, (out / "url").read_text()


def _wait_joined(path: Path, response_id: str, timeout_s: float = 60.0) -> None:
    """Poll (read-only) until the server's loop has joined the rating to the response."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            q = "SELECT reward FROM responses WHERE id = ?"
            if db.execute(q, (response_id,)).fetchone()[0] is not None:
                return
            time.sleep(0.1)
    finally:
        db.close()
    raise AssertionError(f"{response_id} not joined within {timeout_s} s")


def _kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)


def test_log_survives_sigkill_and_rating_joins_after_restart(model_cache, tmp_path):
    proc, url = _start(tmp_path)
    try:
        c = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, timeout=60, max_retries=0)
        served = [c.completions.create(model="rewardloop", prompt="Friday night feed for bob",
                                       user="reader-7") for _ in range(3)]  # fmt: skip
        status, first = post(f"{url}/v1/feedback", {"response_id": served[0].id, "value": "like",
                                                    "user": "reader-7", "key": "k0"})  # fmt: skip
        assert status == 200 and not first["duplicate"]
    finally:
        _kill(proc)  # no chance to flush or close anything
    log = ResponseLog(tmp_path / "responses.sqlite3")
    for r in served:
        row = log.response(r.id)
        assert row is not None and row["version"] == 0 and row["completion_ids"]
        assert row["user_key"] == log.user_key("reader-7")  # the secret was kept in the log
    log.close()

    proc, url = _start(tmp_path)
    try:
        status, again = post(f"{url}/v1/feedback", {"response_id": served[0].id,
                                                    "value": "like", "key": "k0"})  # fmt: skip
        assert status == 200 and again["duplicate"]
        status, late = post(f"{url}/v1/feedback", {"response_id": served[1].id, "stars": 5,
                                                   "user": "reader-7", "key": "k1"})  # fmt: skip
        assert status == 200 and late["joined_after_s"] > 0
        status, unknown = post(f"{url}/v1/feedback", {"response_id": "cmpl-nope", "value": 1})
        assert status == 404 and unknown["error"]["type"] == "not_found_error"
        _wait_joined(tmp_path / "responses.sqlite3", served[1].id)
    finally:
        _kill(proc)
    log = ResponseLog(tmp_path / "responses.sqlite3")
    states = {r.id: log.response(r.id) for r in served}
    assert states[served[1].id]["reward"] == 1.0  # 5 stars, joined across the restart
    assert states[served[1].id]["outcome"] == "rated"
    assert states[served[2].id]["state"] == "waiting"  # never rated: still waiting
    counters = log.counters()
    assert counters["feedback_unknown_response"] == 1 and counters["feedback_duplicate"] == 1
    log.close()


def test_feedback_over_grpc(model_cache, tmp_path):
    import grpc
    from serve_testutil import build, client

    from rewardloop.pb import feedback_pb2, feedback_pb2_grpc

    st = build(tmp_path, "serve.grpc_port=0")
    try:
        r = client(st).completions.create(model="rewardloop", prompt="hi", user="g1")
        with grpc.insecure_channel(st.grpc.address) as channel:
            stub = feedback_pb2_grpc.FeedbackServiceStub(channel)
            md = (("authorization", f"Bearer {KEY}"),)
            req = feedback_pb2.SubmitRatingRequest(item_id=r.id, stars=5, rater="g1",
                                                   idempotency_key="g")  # fmt: skip
            assert not stub.SubmitRating(req, metadata=md, timeout=30).duplicate
            assert stub.SubmitRating(req, metadata=md, timeout=30).duplicate
            with pytest.raises(grpc.RpcError) as e:
                stub.SubmitRating(feedback_pb2.SubmitRatingRequest(item_id="nope", value=1),
                                  metadata=md, timeout=30)  # fmt: skip
            assert e.value.code() == grpc.StatusCode.NOT_FOUND
            with pytest.raises(grpc.RpcError) as e:
                stub.SubmitRating(req, timeout=30)
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        (joined,) = st.log.take_ready()
        assert joined.id == r.id and joined.reward == 1.0
    finally:
        st.stop()
