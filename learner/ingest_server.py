"""The learner's ingest endpoint: `TrajectoryService.Stream` with acks and credits.

One bidirectional stream per worker connection, in the order trajectory.proto defines: hello ->
initial credits; each batch -> exactly one Ack; credit-only Acks whenever the buffer releases the
worker's items. The sync gRPC server runs each stream's response generator in a pool thread;
a per-stream reader thread consumes the requests and pushes Acks into the stream's queue, so a
credit grant can be sent at any moment (a worker that holds credits reserved for groups still
awaiting rewards sends nothing while it waits for more, so grants cannot wait for its next
batch: the generator must not sit in the request iterator). Bad trajectories are rejected one by one (the reason
names the field) and never end the stream; protocol errors (no hello) abort only that stream.

Cost per batch (see `rewardloop bench ingest`): each batch is decoded and validated at once with
a few numpy calls over its packed arrays (`wire_columns.trajectories_from_columns` for the
column form workers send, `wire.trajectories_from_protos` for the row form), and the Ack to a
column batch names only the duplicate and rejected ids (`accepted_rest`), so what remains is
mostly gRPC-Python's own cost per message. Grants ride on batch Acks where they can, and cost
a message of their own only when no batch is being answered (`ingest_stream.StreamState`); the
wire size of each request comes with it from the
deserializer (no `ByteSize()`).
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable, Iterator

import grpc

from rewardloop import grpc_util
from rewardloop.auth import ServerSecurity
from rewardloop.learner.buffer import TrajectoryBuffer
from rewardloop.learner.credits import CreditLedger, Grant
from rewardloop.learner.ingest_admit import admit_rows
from rewardloop.learner.ingest_protocol import (
    SERVICE_NAME,
    batch_problem,
    hello_problem,
    register_lenient,
)
from rewardloop.learner.ingest_stream import END, GRANT, Abort, StreamState
from rewardloop.pb import trajectory_pb2
from rewardloop.wire import trajectories_from_protos
from rewardloop.wire_columns import trajectories_from_columns

log = logging.getLogger(__name__)


_POLL_S = 0.5  # how often an idle response generator checks that its RPC is still alive


class IngestServer:
    """gRPC TrajectoryService feeding a TrajectoryBuffer, with credit-based back-pressure.

    `capacity` (default: the buffer's) is the total credit budget. While started, the server
    hooks itself into `buffer.on_release` (chaining any previous hook) to return credits.
    At most `max_streams` streams are open at once (the next is refused with RESOURCE_EXHAUSTED,
    counted in `stats()["streams_refused_busy"]`); a trajectory longer than
    `max_trajectory_tokens` (prompt + completion) is rejected, naming the bound.
    `security` (token, TLS, the non-loopback rule) is `GrpcServer`'s; refusals count in
    `stats()["unauthenticated"]`.
    """

    def __init__(
        self,
        buffer: TrajectoryBuffer,
        version_fn: Callable[[], int],
        port: int = 0,
        host: str = "127.0.0.1",
        vocab_size: int | None = None,
        capacity: int | None = None,
        max_streams: int = 128,
        credit_unit: int = 1,
        max_trajectory_tokens: int | None = None,
        security: ServerSecurity | None = None,
        incarnation: str = "",
        durable_fn: Callable[[], int] | None = None,
    ):
        self.buffer = buffer
        # Every Ack names this learner process and its newest durable version (trajectory.proto),
        # so a worker knows what to re-send after a restart and what it may forget.
        self.incarnation = incarnation
        self._durable_fn = durable_fn or (lambda: 0)
        self._version_fn = version_fn
        self._vocab_size = vocab_size
        self._max_tokens = max_trajectory_tokens
        self._capacity = capacity or buffer.capacity
        self._credit_unit = credit_unit  # credits go out in whole groups (see credits.py)
        self._credits = CreditLedger(self._capacity, unit=credit_unit)
        self._lock = threading.Lock()
        self._streams: dict[str, StreamState] = {}
        self._ids = itertools.count(1)
        self._counts: Counter[str] = Counter()
        self._rejected: Counter[str] = Counter()
        self._grpc = grpc_util.GrpcServer(
            [lambda s: register_lenient(self.stream, s)],
            host=host,
            port=port,
            max_workers=max_streams,
            max_calls_key="learner.max_streams",
            health_names=[SERVICE_NAME],
            name="ingest",
            what="learner.port",
            security=security,
        )
        self._prev_hook = None
        self._stopping = False

    # ---- lifecycle ---------------------------------------------------------------------

    def start(self) -> int:
        """Bind and serve; returns the bound port."""
        if self._grpc.started:
            raise RuntimeError("IngestServer already started")
        self._stopping = False
        self._credits = CreditLedger(
            self._capacity, held=self.buffer.held_by_worker(), unit=self._credit_unit
        )
        self._prev_hook = self.buffer.on_release
        self.buffer.on_release = self._on_release
        try:
            self._grpc.start()
        except BaseException:
            self.buffer.on_release = self._prev_hook
            raise
        return self._grpc.port

    def stop(self, grace_s: float = 2.0) -> None:
        """Stop serving: health NOT_SERVING, open streams end with UNAVAILABLE, then shut down."""
        if not self._grpc.started:
            return
        self._stopping = True
        self._grpc.stop(grace_s, drain=self._end_streams)

    def _end_streams(self) -> None:
        if self.buffer.on_release == self._on_release:
            self.buffer.on_release = self._prev_hook
        with self._lock:
            streams = list(self._streams.values())
        for st in streams:
            st.acks.put(Abort(grpc.StatusCode.UNAVAILABLE, "ingest server is stopping"))

    @property
    def address(self) -> str:
        return self._grpc.address

    @property
    def port(self) -> int:
        return self._grpc.port

    def stats(self) -> dict:
        """Server counters (rejections by field), open streams, and the credit ledger."""
        with self._lock:
            out = dict(self._counts)
            out["rejected"] = dict(self._rejected)
            out["rejected_total"] = sum(self._rejected.values())
            out["streams_open"] = len(self._streams)
        out["credits"] = self._credits.snapshot()
        out["accounting"] = self.buffer.ledger.counts()
        out["streams_refused_busy"] = self._grpc.busy_refused
        out["unauthenticated"] = self._grpc.unauthenticated
        return out

    # ---- the stream --------------------------------------------------------------------

    def stream(self, requests: Iterator, context: grpc.ServicerContext) -> Iterator:
        """Response generator of one TrajectoryService.Stream call."""
        if self._stopping:
            context.abort(grpc.StatusCode.UNAVAILABLE, "ingest server is stopping")
        try:
            hello = next(requests)
        except (StopIteration, grpc.RpcError):
            return
        problem = hello_problem(hello)
        if problem:  # not a hello, or bytes that are no TrajectoryBatch at all
            self._count("protocol_errors")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        st = StreamState(f"s{next(self._ids)}", hello[0].hello.worker_id)
        with self._lock:
            self._streams[st.stream_id] = st
            self._counts["streams_total"] += 1
        context.add_callback(lambda: st.acks.put(END))
        try:
            initial = self._credits.open_stream(st.stream_id, st.worker_id)
            yield self._stamp(
                trajectory_pb2.Ack(batch_seq=0, credits=initial, learner_version=self._version_fn())
            )
            reader = threading.Thread(
                target=self._read, args=(st, requests), name=f"ingest-{st.stream_id}", daemon=True
            )
            reader.start()
            while True:
                try:
                    item = st.acks.get(timeout=_POLL_S)
                except queue.Empty:
                    if not context.is_active():
                        return
                    continue
                if item is END:
                    return
                if isinstance(item, Abort):
                    context.abort(item.code, item.details)
                if item is GRANT:  # grants that found no batch Ack to ride on (ingest_stream)
                    k = st.take_pending()
                    if not k:
                        continue  # a batch Ack took them meanwhile
                    item = trajectory_pb2.Ack(credits=k, learner_version=self._version_fn())
                    self._count("credit_acks")
                else:
                    st.take_ack(item)
                self._count("acks_sent")
                yield self._stamp(item)
        finally:
            with self._lock:
                self._streams.pop(st.stream_id, None)
            self._send_grants(self._credits.close_stream(st.stream_id))

    def _read(self, st: StreamState, requests: Iterator) -> None:
        """Reader thread: one Ack per batch into the stream's queue (carrying the credits
        granted meanwhile); ends the queue when done."""
        try:
            for received in requests:
                if self._stopping:
                    break
                if isinstance(received, grpc_util.BadRequest):
                    problem = received.details
                else:
                    batch, size = received
                    problem = batch_problem(batch)
                if problem:
                    self._count("protocol_errors")
                    st.acks.put(Abort(grpc.StatusCode.INVALID_ARGUMENT, problem))
                    return
                st.begin_batch()  # grants from now on ride on this batch's Ack
                st.end_batch(self._handle_batch(st, batch, size))
        except grpc.RpcError:
            pass  # the client went away or the server is stopping
        except Exception as exc:  # a bug must end this stream only, never the server
            log.exception("ingest stream %s failed", st.stream_id)
            st.acks.put(Abort(grpc.StatusCode.INTERNAL, f"ingest: {type(exc).__name__}: {exc}"))
        finally:
            st.idle()
            st.acks.put(END)

    def _handle_batch(
        self, st: StreamState, batch: trajectory_pb2.TrajectoryBatch, size: int
    ) -> trajectory_pb2.Ack:
        columns = batch.HasField("columns")  # the column form (wire_columns.py), else rows
        msgs = batch.trajectories
        n = len(batch.columns.id) if columns else len(msgs)
        allowed = self._credits.consume(st.stream_id, n)  # <= n
        version = self._version_fn()
        ack = trajectory_pb2.Ack(batch_seq=batch.batch_seq, learner_version=version)
        # The whole batch is decoded and validated at once (a few numpy calls, see wire.py and
        # wire_columns.py), rows past the credits not at all; each row still gets its own verdict.
        if columns:
            ids, decoded = trajectories_from_columns(
                batch.columns, self._vocab_size, self._max_tokens, limit=allowed
            )
            ack.accepted_rest = True  # the client knows its ids: name only the others
        else:
            ids = [msg.id for msg in msgs]
            decoded = trajectories_from_protos(msgs[:allowed], self._vocab_size, self._max_tokens)
        with self.buffer.admitting():  # one buffer lock for the whole batch, not one per row
            accepted, duplicate = admit_rows(
                self.buffer, self._reject, st.worker_id, ack, ids, decoded, version
            )
        for tid in ids[allowed:]:
            self._reject(ack, tid, f"credits: exceeded (batch of {n}, {allowed} credits left)")
        if not columns:
            ack.accepted.extend(accepted)
        # read after the admits: an ack below the durable version is inside that checkpoint
        ack.learner_version = self._version_fn()
        ack.duplicate.extend(duplicate)
        with self._lock:
            self._counts["batches"] += 1
            self._counts["bytes"] += size
            self._counts["trajectories"] += n
            self._counts["accepted"] += len(accepted)
            self._counts["duplicate"] += len(duplicate)
        self._send_grants(self._credits.release(st.worker_id, allowed - len(accepted)))
        return ack

    def _reject(
        self,
        ack: trajectory_pb2.Ack,
        tid: str,
        reason: str,
        worker: str = "",
        version: int | None = None,
    ) -> None:
        """Reject `tid` in the Ack, counted and audited (worker, version: when the buffer refused)."""
        ack.rejected.add(id=tid, reason=reason)
        with self._lock:
            self._rejected[reason.split(":", 1)[0]] += 1
        # an id that already had an outcome counts as an ignored duplicate there, not twice
        self.buffer.ledger.reject(tid, reason, worker, version)

    # ---- credits back ------------------------------------------------------------------

    def hold_credits(self) -> None:
        """Grant nothing until `resume_credits` (the learner trains a strictly on-policy step)."""
        self._credits.pause()

    def resume_credits(self) -> None:
        """Grant what was released while held (the new version is published)."""
        self._send_grants(self._credits.resume())

    def _on_release(self, worker_id: str, count: int) -> None:
        self._send_grants(self._credits.release(worker_id, count))
        if self._prev_hook is not None:
            self._prev_hook(worker_id, count)

    def _send_grants(self, grants: list[Grant]) -> None:
        """Credits to each stream: they ride on a batch Ack when they can (`StreamState`)."""
        if not grants:
            return
        with self._lock:
            streams = [(self._streams.get(sid), k) for sid, k in grants if k > 0]
            self._counts["grants"] += len(streams)
        for st, k in streams:
            if st is not None:
                st.add_grant(k)

    def _stamp(self, ack: trajectory_pb2.Ack) -> trajectory_pb2.Ack:
        ack.incarnation = self.incarnation
        ack.durable_version = self._durable_fn()
        return ack

    def _count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1
