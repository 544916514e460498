"""The worker's side of `WeightService.Subscribe`: poll or follow the learner's weights.

`poll` asks once (with a deadline) for a version newer than the one held; `follow` yields each
newer version as it arrives, re-subscribing every `timeout_s` so no call is without a deadline.
Every version is checked (chunk order, count, sha256) by `weight_wire.join_chunks` before it is decoded.
On UNAVAILABLE the channel is rebuilt and the call retried with backoff, a bounded number of
times in a row.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import grpc
import torch

from rewardloop import grpc_util
from rewardloop.pb import weights_pb2, weights_pb2_grpc
from rewardloop.weight_wire import join_chunks, state_dict_from_bytes


class WeightClient:
    """Fetches versioned safetensors weights from a WeightServer."""

    def __init__(self, target: str, timeout_s: float = 30.0, max_retries: int = 3):
        self.target = target
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self._channel: grpc.Channel | None = None
        self._stub: weights_pb2_grpc.WeightServiceStub | None = None
        self.reconnects = 0

    def poll(self, have_version: int = -1) -> tuple[int, dict[str, torch.Tensor]] | None:
        """The latest version if newer than `have_version`, else None (one call, one deadline)."""
        got = self.poll_bytes(have_version)
        return None if got is None else (got[0], state_dict_from_bytes(got[1]))

    def poll_bytes(self, have_version: int = -1) -> tuple[int, bytes] | None:
        """Like `poll`, returning the verified safetensors bytes undecoded."""
        for attempt in range(self.max_retries + 1):
            call = self._subscribe(have_version, once=True)
            try:
                return _next_version(call)
            except grpc.RpcError as exc:
                self._retry_or_raise(exc, attempt, "weights poll")
            finally:
                call.cancel()
        raise AssertionError("unreachable")

    def follow(self, have_version: int = -1) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
        """Yield (version, state_dict) for every newer version, forever; close() to stop."""
        for version, payload in self.follow_bytes(have_version):
            yield version, state_dict_from_bytes(payload)

    def follow_bytes(self, have_version: int = -1) -> Iterator[tuple[int, bytes]]:
        failures = 0
        while True:
            call = self._subscribe(have_version, once=False)
            try:
                while True:
                    got = _next_version(call)
                    if got is None:
                        break  # the server ended the subscription; subscribe again
                    failures = 0
                    have_version = got[0]
                    yield got
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:  # deadline = re-subscribe
                    self._retry_or_raise(exc, failures, "weights follow")
                    failures += 1
            finally:
                call.cancel()

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = self._stub = None

    def __enter__(self) -> WeightClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- internals ---------------------------------------------------------------------

    def _subscribe(self, have_version: int, once: bool):
        if self._stub is None:
            self._channel = grpc_util.new_channel(self.target)
            self._stub = weights_pb2_grpc.WeightServiceStub(self._channel)
        request = weights_pb2.SubscribeRequest(have_version=have_version, once=once)
        return self._stub.Subscribe(request, timeout=self.timeout_s)

    def _retry_or_raise(self, exc: grpc.RpcError, attempt: int, what: str) -> None:
        """Rebuild the channel and back off if retryable and retries are left; else raise."""
        if not grpc_util.is_retryable(exc) or attempt >= self.max_retries:
            raise grpc_util.error_from_rpc(exc, f"{what} from {self.target}") from exc
        self.close()
        self.reconnects += 1
        grpc_util.sleep_backoff(attempt)


def _next_version(call) -> tuple[int, bytes] | None:
    """Read one whole version from the chunk stream; None if the stream ends first."""
    first = next(call, None)
    if first is None:
        return None
    return join_chunks(itertools.chain([first], call))
