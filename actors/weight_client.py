"""The worker's side of `WeightService.Subscribe`: poll, long-poll or follow the learner's weights.

- `poll(have)` asks once for a version newer than `have` and returns at once (None if none).
- `wait_for_version(newer_than, timeout_s)` is the long-poll a rollout worker blocks on when it
  needs fresh weights: one call that the server holds until the learner publishes a newer
  version, which is then pushed at once; None after `timeout_s` without one.
- `follow(have)` yields each newer version as it arrives, re-subscribing every `timeout_s` so
  no call is without a deadline.

Responses are taken as raw bytes (no protobuf deserializer): `weight_wire.join_chunks` parses
each WeightChunk, writes its data into one preallocated buffer, checks chunk order, count,
size and digest, and `state_dict_from_bytes` returns tensors that view that buffer (no copy).
On UNAVAILABLE the channel is rebuilt and the call retried with backoff, `max_retries` times in
a row and on until `reconnect_s` have passed since the first failure (a worker outside the
cluster waits out a learner restart).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import grpc
import torch

from rewardloop import grpc_util
from rewardloop.pb import weights_pb2
from rewardloop.weight_wire import SUBSCRIBE_METHOD, join_chunks, state_dict_from_bytes

Version = tuple[int, dict[str, torch.Tensor]]
VersionBytes = tuple[int, memoryview]


class WeightClient:
    """Fetches versioned safetensors weights from a WeightServer.

    `timeout_s` bounds each transfer (and each `follow` subscription); waiting for a version
    to be published is bounded separately by `wait_for_version`'s own `timeout_s`. `ca_cert`
    (a PEM path) turns on TLS; `token` is sent as `authorization: Bearer` on every call."""

    def __init__(
        self,
        target: str,
        timeout_s: float = 30.0,
        max_retries: int = 3,
        ca_cert: str = "",
        token: str = "",
        reconnect_s: float = 0.0,
    ):
        self.target = target
        self.reconnect_s = reconnect_s
        self._ca_cert, self._token = ca_cert, token  # TLS trust (PEM path), learner.token
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self._channel: grpc.Channel | None = None
        self._subscribe_rpc = None
        self.reconnects = 0

    def poll(self, have_version: int = -1) -> Version | None:
        """The latest version if newer than `have_version`, else None (one call, no waiting)."""
        return _decoded(self.poll_bytes(have_version))

    def poll_bytes(self, have_version: int = -1) -> VersionBytes | None:
        """Like `poll`, returning the verified safetensors bytes (a writable buffer) undecoded."""
        return self.wait_for_version_bytes(have_version, 0.0)

    def wait_for_version(self, newer_than: int, timeout_s: float) -> Version | None:
        """Block until a version newer than `newer_than` is published (at most `timeout_s`),
        then fetch it: (version, state_dict), or None if none was published in time."""
        return _decoded(self.wait_for_version_bytes(newer_than, timeout_s))

    def wait_for_version_bytes(self, newer_than: int, timeout_s: float) -> VersionBytes | None:
        """Like `wait_for_version`, returning the verified safetensors bytes undecoded."""
        if timeout_s < 0:
            raise ValueError(f"timeout_s: must be >= 0, got {timeout_s}")
        deadline = time.monotonic() + timeout_s
        first_failure = 0.0
        for attempt in itertools.count():
            wait_s = max(0.0, deadline - time.monotonic())
            call = self._subscribe(newer_than, once=True, wait_s=wait_s)
            try:
                return _next_version(call)
            except grpc.RpcError as exc:
                first_failure = first_failure or time.monotonic()
                self._retry_or_raise(exc, attempt, "weights poll", first_failure)
            finally:
                call.cancel()
        raise AssertionError("unreachable")

    def follow(self, have_version: int = -1) -> Iterator[Version]:
        """Yield (version, state_dict) for every newer version, forever; close() to stop."""
        for version, payload in self.follow_bytes(have_version):
            yield version, state_dict_from_bytes(payload)

    def follow_bytes(self, have_version: int = -1) -> Iterator[VersionBytes]:
        failures, first_failure = 0, 0.0
        while True:
            call = self._subscribe(have_version, once=False)
            try:
                while True:
                    got = _next_version(call)
                    if got is None:
                        break  # the server ended the subscription; subscribe again
                    failures, first_failure = 0, 0.0
                    have_version = got[0]
                    yield got
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:  # deadline = re-subscribe
                    first_failure = first_failure or time.monotonic()
                    self._retry_or_raise(exc, failures, "weights follow", first_failure)
                    failures += 1
            finally:
                call.cancel()

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = self._subscribe_rpc = None

    def __enter__(self) -> WeightClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- internals ---------------------------------------------------------------------

    def _subscribe(self, have_version: int, once: bool, wait_s: float = 0.0):
        if self._subscribe_rpc is None:
            self._channel = grpc_util.new_channel(
                self.target, ca_cert=self._ca_cert, token=self._token
            )
            self._subscribe_rpc = self._channel.unary_stream(
                SUBSCRIBE_METHOD,
                request_serializer=weights_pb2.SubscribeRequest.SerializeToString,
                response_deserializer=None,  # raw bytes: join_chunks parses them without copies
                _registered_method=True,
            )
        request = weights_pb2.SubscribeRequest(
            have_version=have_version, once=once, wait_ms=int(wait_s * 1000)
        )
        return self._subscribe_rpc(request, timeout=self.timeout_s + wait_s)

    def _retry_or_raise(self, exc: grpc.RpcError, attempt: int, what: str, since: float) -> None:
        """Rebuild the channel and back off if retryable and retries (or `reconnect_s` since the
        first failure, `since`) are left; else raise."""
        out_of_time = time.monotonic() - since >= self.reconnect_s
        if not grpc_util.is_retryable(exc) or (attempt >= self.max_retries and out_of_time):
            raise grpc_util.error_from_rpc(exc, f"{what} from {self.target}") from exc
        self.close()
        self.reconnects += 1
        grpc_util.sleep_backoff(attempt)


def _next_version(call) -> VersionBytes | None:
    """Read one whole version from the chunk stream; None if the stream ends first."""
    first = next(call, None)
    if first is None:
        return None
    return join_chunks(itertools.chain([first], call))


def _decoded(got: VersionBytes | None) -> Version | None:
    return None if got is None else (got[0], state_dict_from_bytes(got[1]))
