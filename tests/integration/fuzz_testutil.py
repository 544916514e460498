"""Bad-input test kit: a real gateway on port 0, raw HTTP over a socket, store snapshots."""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from dataclasses import dataclass

from rewardloop.config import FeedbackConfig
from rewardloop.feedback.gateway.server import FeedbackGateway

TOKEN = "fuzz-t0ken"
MAX_BYTES = 1 << 16
PUBLISHER = "pub-1"
SEED_PENDING, SEED_RATED, RATER = "seed-pending", "seed-rated", "rater-1"


def start_gateway(tmp_dir) -> FeedbackGateway:
    """A gateway with a token, a temp SQLite store, one pending and one rated item."""
    cfg = FeedbackConfig(
        store_path=str(tmp_dir / "fuzz.sqlite3"),
        http_port=0,
        grpc_port=0,
        token=TOKEN,
        max_request_bytes=MAX_BYTES,
        expiry_s=3600,
    )
    gw = FeedbackGateway(cfg)
    gw.start()
    items = [
        {"id": i, "prompt": "A headline:", "completion": "Cup won"}
        for i in (SEED_PENDING, SEED_RATED)
    ]
    gw.core.publish(items, PUBLISHER)
    gw.core.submit(SEED_RATED, 1.0, RATER)
    return gw


def snapshot(gw: FeedbackGateway) -> tuple:
    """Every row of the store's items, ratings, forgotten and counters tables."""
    db = sqlite3.connect(gw.cfg.store_path)
    try:
        return tuple(
            tuple(db.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall())
            for t in ("items", "ratings", "forgotten", "counters")
        )
    finally:
        db.close()


def errors(gw: FeedbackGateway) -> dict[str, int]:
    return dict(gw.core.stats()["request_errors"])


def n_errors(gw: FeedbackGateway) -> int:
    return sum(errors(gw).values())


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)

    @property
    def from_app(self) -> bool:
        """Answered by the gateway's app (JSON error or page), not aiohttp's HTTP parser."""
        ctype = self.headers.get("content-type", "")
        return "content-security-policy" in self.headers or ctype.startswith("application/json")


def raw_http(
    port: int,
    method: bytes,
    target: bytes,
    headers: list[tuple[bytes, bytes]] = (),
    body: bytes = b"",
    *,
    token: bytes | None = TOKEN.encode(),
    content_length: bool = True,
    timeout_s: float = 10.0,
) -> Answer:
    """One request of exactly these bytes; the answer read until the server closes."""
    head = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    if token is not None:
        head.append(b"Authorization: Bearer " + token)
    if content_length:
        head.append(b"Content-Length: " + str(len(body)).encode())
    head += [k + b": " + v for k, v in headers]
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        s.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    top, _, rest = data.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return Answer(int(lines[0].split()[1]), hdrs, rest)


def drop_mid_body(port: int, target: bytes, declared: int, sent: bytes) -> None:
    """Declare `declared` body bytes, send only `sent`, then hang up."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(
            b"POST "
            + target
            + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + TOKEN.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: "
            + str(declared).encode()
            + b"\r\n\r\n"
            + sent
        )


def wait_for(cond, limit_s: float = 5.0) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def still_serving(gw: FeedbackGateway) -> None:
    """Health answers SERVING and an authorized call still answers (lists pending items)."""
    port = gw.http.port
    health = raw_http(port, b"GET", b"/healthz", token=None)
    assert (health.status, health.json()) == (200, {"status": "SERVING"})
    pending = raw_http(port, b"GET", b"/v1/pending?limit=5")
    assert pending.status == 200, pending.body
    assert isinstance(pending.json()["items"], list)
