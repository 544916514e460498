"""One ingest stream's state between its two threads, and how credit grants reach the worker.

The sync gRPC server gives each stream a response generator (the only thread that may send)
and `IngestServer` a reader thread that answers each batch; they meet in `acks`, a queue of
batch Acks and markers. Credits granted while the reader answers a batch, or while its Ack
waits for the generator, ride on that Ack (`begin_batch` / `end_batch` / `take_ack`): no message
and no wake-up of their own. Otherwise they wait
in `pending` and one `GRANT` marker wakes the generator (`add_grant`), which sends all that are
pending by then in one Ack (`take_pending`) -- at once, because the worker may be waiting for
them: one that keeps credits for groups still waiting for rewards sends nothing meanwhile, and
`TrajectoryClient` holds back a partial batch while batches are on the wire. (Holding
a grant a few milliseconds for the next batch Ack to carry it saved those messages but stalled
exactly that client: each side waited for the other.)
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field

import grpc


@dataclass(frozen=True)
class Abort:
    """End the stream with this status (from the reader, or at server stop)."""

    code: grpc.StatusCode
    details: str


END = object()  # the request side ended; the response generator returns
GRANT = object()  # credits wait in the stream's `pending`: send them


@dataclass
class StreamState:
    stream_id: str
    worker_id: str
    acks: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)  # C: a cheap hand-off
    lock: threading.Lock = field(default_factory=threading.Lock)
    pending: int = 0  # credits granted, not yet sent
    busy: bool = False  # the reader is answering a batch: its Ack will carry `pending`
    signalled: bool = False  # a GRANT is queued
    queued: int = 0  # batch Acks in `acks` the generator has not taken yet (`take_ack`)

    def add_grant(self, k: int) -> None:
        """`k` credits for this stream (any thread)."""
        with self.lock:
            self.pending += k
            wake = not (self.busy or self.signalled or self.queued)
            self.signalled = self.signalled or wake
        if wake:
            self.acks.put(GRANT)

    def begin_batch(self) -> None:
        """The reader starts answering a batch: grants from now on ride on its Ack."""
        with self.lock:
            self.busy = True

    def end_batch(self, ack) -> None:
        """The reader's Ack takes every pending credit; then it goes to the generator."""
        with self.lock:
            ack.credits += self.pending
            self.pending, self.busy = 0, False
            self.queued += 1
        self.acks.put(ack)

    def take_ack(self, ack) -> None:
        """The generator took a batch Ack from `acks`: it carries the credits granted since."""
        with self.lock:
            ack.credits += self.pending
            self.pending = 0
            self.queued -= 1

    def idle(self) -> None:
        with self.lock:
            self.busy = False

    def take_pending(self) -> int:
        """The credits to send alone now (0 when a batch Ack took them meanwhile)."""
        with self.lock:
            k, self.pending, self.signalled = self.pending, 0, False
        return k
