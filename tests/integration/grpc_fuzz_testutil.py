"""Bad-input kit for the learner's gRPC servers (ingest, weights): raw-bytes calls, a fuzz budget,
an independent validator of trajectories, and per-server input counts.

Calls go through a channel's generic `stream_stream` / `unary_stream` with identity request
serializers, so what a test sends need not be a valid message at all. The validator restates
trajectory.proto's rules on its own (it does not call `rewardloop.wire`), so a test can hold
the server's per-trajectory verdicts to it.
"""

from __future__ import annotations

import math
import os
import queue
import random
import time
from collections import Counter

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rewardloop import grpc_util

SCALE = float(os.environ.get("REWARDLOOP_FUZZ_SCALE", "1"))
"""Multiplies every example count and time budget (1 = the bounded CI run, ~10 s per server)."""
TOKEN = "fuzz-learner-t0ken"
BAD_CODES = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
COUNTS: Counter[str] = Counter()
"""Inputs sent per server ("ingest", "weights") by one test module, printed (and reset) by
`report()`."""


def metadata(token: str | None = TOKEN) -> list | None:
    return [("authorization", f"Bearer {token}")] if token is not None else None


def new_channel(address: str) -> grpc.Channel:
    return grpc.insecure_channel(address, options=grpc_util.channel_options())


def budget(seconds: float, count: int):
    """Yields 0, 1, ... until `count * SCALE` items or `seconds * SCALE` have passed."""
    deadline = time.monotonic() + seconds * SCALE
    for i in range(int(count * SCALE)):
        if time.monotonic() > deadline:
            return
        yield i


def mutate(rng: random.Random, data: bytes) -> bytes:
    """A valid message's bytes, damaged: bytes flipped, cut short, spliced or padded."""
    b = bytearray(data)
    op = rng.randrange(5)
    if op == 0 and b:
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif op == 1 and b:
        del b[rng.randrange(len(b)) :]
    elif op == 2:
        b[rng.randrange(len(b) + 1) : rng.randrange(len(b) + 1)] = rng.randbytes(rng.randint(1, 12))
    elif op == 3:
        b += rng.randbytes(rng.randint(1, 16))
    else:
        return rng.randbytes(rng.randint(0, 64))
    return bytes(b)


class RawStream:
    """One TrajectoryService.Stream call sending raw bytes; outcome = Ack or (code, details)."""

    METHOD = "/rewardloop.pb.TrajectoryService/Stream"

    def __init__(self, channel: grpc.Channel, ack_type, token: str | None = TOKEN, timeout_s=10.0):
        self.requests: queue.Queue = queue.Queue()
        fn = channel.stream_stream(
            self.METHOD, request_serializer=None, response_deserializer=ack_type.FromString
        )
        self.call = fn(iter(self.requests.get, None), timeout=timeout_s, metadata=metadata(token))

    def send(self, data: bytes) -> None:
        COUNTS["ingest"] += 1
        self.requests.put(data)

    def next(self):
        """The next Ack, or (status code, details) when the call ended."""
        try:
            return next(self.call)
        except grpc.RpcError as exc:
            return exc.code(), exc.details()
        except StopIteration:
            return grpc.StatusCode.OK, "ended"

    def answer(self):
        """The next message that is not a credit grant (a batch's Ack, or the call's end):
        grants from streams that just closed may arrive at any moment (trajectory.proto)."""
        while True:
            got = self.next()
            if not isinstance(got, tuple) and got.batch_seq == 0 and not got.accepted:
                continue
            return got

    def close(self) -> None:
        self.requests.put(None)
        self.call.cancel()


def serving(channel: grpc.Channel) -> bool:
    """Health answers SERVING without a token."""
    stub = health_pb2_grpc.HealthStub(channel)
    reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def wait_for(cond, limit_s: float = 10.0) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


# ---- what trajectory.proto allows (restated, not imported) ------------------------------


def bad_fields(msg, *, worker: str, version: int, staleness: int, vocab: int, max_tokens: int):
    """The set of fields of `msg` (a Trajectory) that break trajectory.proto's rules, plus the
    learner's own (stale / future version, length bound, the stream's worker id)."""
    bad = set()
    if not msg.id or len(msg.id) > 256:
        bad.add("id")
    if not msg.group_id:
        bad.add("group_id")
    ids = {}
    for name in ("prompt_ids", "completion_ids"):
        blob = getattr(msg, name)
        if not blob or len(blob) % 4:
            bad.add(name)
        else:
            ids[name] = np.frombuffer(blob, "<i4")
            if ids[name].min() < 0 or ids[name].max() >= vocab:
                bad.add(name)
    n_prompt = len(msg.prompt_ids) // 4
    if n_prompt > max_tokens:
        bad.add("prompt_ids")
    if n_prompt + len(msg.completion_ids) // 4 > max_tokens:
        bad.add("completion_ids")
    lps = msg.behavior_logprobs
    if len(lps) != len(msg.completion_ids):
        bad.add("behavior_logprobs")
    elif lps and len(lps) % 4 == 0:
        arr = np.frombuffer(lps, "<f4")
        if not (np.isfinite(arr).all() and arr.max() <= 1e-4):
            bad.add("behavior_logprobs")
    if not math.isfinite(msg.reward):
        bad.add("reward")
    if any(not (math.isfinite(p.value) and math.isfinite(p.weight)) for p in msg.reward_parts):
        bad.add("reward_parts")
    if not math.isfinite(msg.feedback.latency_s):
        bad.add("feedback.latency_s")
    if msg.policy_version < 0 or not version - staleness <= msg.policy_version <= version:
        bad.add("policy_version")
    if msg.group_size < 0:
        bad.add("group_size")
    if msg.worker_id and msg.worker_id != worker:
        bad.add("worker_id")
    return bad


def report(name: str, extra: dict) -> None:
    """One JSON-ish line per server: the inputs sent and what the server counted."""
    print(f"\n[fuzz] {name}: inputs={COUNTS.pop(name, 0)} scale={SCALE} server={extra}")
