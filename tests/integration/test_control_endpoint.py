"""The run's control endpoint (cluster/control.py) on a real port, and `rewardloop scale` /
`rewardloop stop` (rewardloop/scale_command.py) against it: health without a token, 401 for a
missing or wrong token (counted), 400 naming the field, 413 for a big body, the loopback rule,
and a scale request followed until the driver side reports it done. The driver side here is a
thread that applies requests the way `cluster/scaling.py` does from the run's poll loop (the
whole run is tests/integration/test_scaling.py)."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

from rewardloop import scale_command
from rewardloop.cluster.control import MAX_BODY, ControlServer, ScaleRequests
from rewardloop.errors import ConfigError, InvalidInput, Unavailable
from rewardloop.metrics import record_endpoints

TOKEN = "control-test-token"


@pytest.fixture
def control(tmp_path, monkeypatch):
    """(server, run_dir): a served ControlServer recorded in a run directory's endpoints.json,
    with a config.json naming the token as env:CONTROL_TEST_TOKEN (set here)."""
    requests = ScaleRequests(max_workers=8)
    requests.publish({"target": 1, "running": 1, "starting": 0, "retiring": 0})
    server = ControlServer(requests, host="127.0.0.1", port=0, token=TOKEN)
    url = server.start()
    monkeypatch.setenv("CONTROL_TEST_TOKEN", TOKEN)
    (tmp_path / "config.json").write_text(
        json.dumps({"learner": {"token": "env:CONTROL_TEST_TOKEN"}})
    )
    record_endpoints(tmp_path, control=url)
    yield server, tmp_path
    server.stop()


def http(method: str, url: str, body: bytes | None = None, token: str = "") -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_health_needs_no_token_and_everything_else_does(control):
    server, _ = control
    assert http("GET", f"{server.url}/health") == (200, {"status": "serving"})
    assert http("GET", f"{server.url}/workers")[0] == 401
    assert http("POST", f"{server.url}/workers", b'{"workers": 2}', token="wrong")[0] == 401
    assert server.unauthenticated == 2
    assert server.requests.take() is None  # nothing was requested by the refused calls
    status, state = http("GET", f"{server.url}/workers", token=TOKEN)
    assert status == 200 and state["target"] == 1


@pytest.mark.parametrize(
    "body, status, message",
    [
        (b'{"workers": "3"}', 400, "workers: must be an integer, got '3'"),
        (b'{"workers": true}', 400, "workers: must be an integer"),
        (b'{"workers": 0}', 400, "workers: must be in 1..8, got 0"),
        (b'{"workers": 9}', 400, "workers: must be in 1..8, got 9"),
        (b"not json", 400, "body must be JSON"),
        (b"x" * (MAX_BODY + 1), 413, "body must be"),
    ],
)
def test_bad_requests_are_refused_with_the_field_named(control, body, status, message):
    server, _ = control
    got, answer = http("POST", f"{server.url}/workers", body, token=TOKEN)
    assert got == status and message in answer["error"]
    assert server.requests.take() is None
    assert http("GET", f"{server.url}/health")[0] == 200  # and the server is still serving


def test_scale_follows_the_request_until_the_driver_reports_it_done(control):
    server, run_dir = control
    requests, stop = server.requests, threading.Event()

    def driver() -> None:  # the run's poll loop: take the request, change the pool, publish
        while not stop.wait(0.05):
            wanted = requests.take()
            if wanted is not None:
                requests.publish({"target": wanted, "running": wanted, "retiring": 0})

    thread = threading.Thread(target=driver, daemon=True)
    thread.start()
    try:
        state = scale_command.scale(run_dir, 3, wait_s=30, timeout_s=5)
        assert (state["target"], state["running"]) == (3, 3)
        assert scale_command.scale(run_dir, None)["target"] == 3  # without --workers: show
        assert scale_command.stop(run_dir) == {"stopping": True}
        assert requests.stop_requested.is_set()
    finally:
        stop.set()
        thread.join(timeout=5)


def test_scale_says_why_when_refused_or_not_reached(control, monkeypatch):
    server, run_dir = control
    with pytest.raises(InvalidInput, match="HTTP 400.*must be in 1..8"):
        scale_command.scale(run_dir, 99, wait_s=1)
    with pytest.raises(Unavailable, match="has not reached 2 workers within --wait 0.5s"):
        scale_command.scale(run_dir, 2, wait_s=0.5)  # no driver applies it here
    monkeypatch.setenv("CONTROL_TEST_TOKEN", "wrong")
    assert scale_command.command(str(run_dir), 2, 1, 5) == 1


def test_a_stopped_or_ended_run_is_reported_not_reachable(control):
    server, run_dir = control
    server.stop()
    with pytest.raises(Unavailable, match="is the run still running"):
        scale_command.scale(run_dir, 2, wait_s=1, timeout_s=2)
    record_endpoints(run_dir, control="")  # what the run writes when it ends
    with pytest.raises(Unavailable, match="names no control endpoint"):
        scale_command.scale(run_dir, 2)


def test_a_non_loopback_control_host_needs_a_token():
    with pytest.raises(ConfigError, match="cluster.control_host=0.0.0.0 .* learner.token"):
        ControlServer(ScaleRequests(), host="0.0.0.0", port=0)
    ControlServer(ScaleRequests(), host="0.0.0.0", port=0, token=TOKEN)  # with one: fine
    ControlServer(ScaleRequests(), host="0.0.0.0", port=0, allow_insecure=True)
