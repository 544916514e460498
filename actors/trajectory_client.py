"""The worker's side of `TrajectoryService.Stream`: batched, credit-respecting, reconnecting.

`TrajectoryClient` is the `rewardloop.sink.TrajectorySink` a rollout worker sends to.

`send()` blocks until the learner's credits allow each batch, waits for every batch's Ack, and
returns what was accepted, duplicate or rejected. Batches go out in the column form
(`rewardloop.wire_columns`: one message of ~20 fields per batch, not one sub-message per
trajectory), and their Acks name only the duplicate and rejected ids (`accepted_rest`). A
background thread reads Acks (results, credit grants), sends the batches their credits allow
(a partial batch only when none is on the wire: a batch cut to a few credits costs a message
more) and wakes send() only once all are acked: a wake-up costs more than encoding a batch.
If the stream breaks (learner restarting, UNAVAILABLE) the client rebuilds the channel and
stream with bounded, backed-off retries (`max_retries` attempts, and for at least `reconnect_s`
seconds: a worker outside the cluster waits out a learner restart) and re-sends whatever was
not yet acked; the learner reports the ones it had already admitted as duplicates, so nothing
is lost and nothing is trained on twice. Acked trajectories are kept too, up to `retain_acked`,
until an Ack's `durable_version` says a learner checkpoint covers them; a new stream from
another learner `incarnation` (Ray restarted it from an older checkpoint) gets them again first
(`actors/retain.py`). When a send() gives up with Unavailable, its unacked trajectories are kept
and go first in the next send() (`carried` counts them). The client never has more on a stream
than it granted. `ca_cert` (a PEM path) turns on TLS, `token` is sent as `authorization: Bearer`
on the stream; a missing or wrong token raises `Unauthenticated` (no retry).
"""

from __future__ import annotations

import collections
import functools
import itertools
import threading
import time

from rewardloop import grpc_util
from rewardloop.actors.retain import AckedWindow
from rewardloop.actors.retain import fold_ack as _add_ack
from rewardloop.actors.trajectory_stream import Stream as _Stream
from rewardloop.errors import Unavailable
from rewardloop.sink import CreditWait, SendResult
from rewardloop.trajectory import Trajectory
from rewardloop.wire_columns import batch_to_columns

__all__ = ["CreditWait", "SendResult", "TrajectoryClient"]


class TrajectoryClient:
    """Streams trajectories to the learner's IngestServer; one stream per client."""

    def __init__(
        self,
        target: str,
        worker_id: str,
        timeout_s: float = 30.0,
        batch_size: int = 64,
        max_retries: int = 5,
        ca_cert: str = "",
        token: str = "",
        reconnect_s: float = 0.0,
        retain_acked: int = 0,
    ):
        if not worker_id:
            raise ValueError("worker_id: must not be empty")
        if batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
        self.target = target
        self.worker_id = worker_id
        self.timeout_s = timeout_s
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.reconnect_s = reconnect_s  # keep retrying a lost learner at least this long
        self._carry: list[Trajectory] = []  # unacked when a send() gave up; sent first next time
        # acked, not yet in a learner checkpoint: re-sent to a restarted learner (retain.py)
        self._retained = AckedWindow(retain_acked)
        self._resend: list[Trajectory] = []
        self._ca_cert, self._token = ca_cert, token  # TLS trust (PEM path), learner.token
        self._stream: _Stream | None = None
        self._connected_before = False
        self._send_lock = threading.Lock()
        self._aborted = threading.Event()
        self._seq = itertools.count(1)
        self._stats = {
            "sent": 0,
            "batches": 0,
            "accepted": 0,
            "duplicate": 0,
            "rejected": 0,
            "reconnects": 0,
            "credit_waits": 0,
            "carried": 0,
            "connect_failures": 0,  # stream attempts that got no hello ack (learner down)
        }

    @property
    def credits(self) -> int:
        """Credits left on the current stream (0 when not connected)."""
        st = self._stream
        return st.credits if st is not None and not st.ended else 0

    @property
    def learner_version(self) -> int:
        """The learner's weight version as of its latest Ack or grant (-1 before any)."""
        st = self._stream
        return st.learner_version if st is not None else -1

    @property
    def carried(self) -> int:
        """Unacked trajectories kept after a send() gave up; the next send() sends them first."""
        return len(self._carry)

    def hand_over(self, to: TrajectoryClient) -> None:
        """Give `to` (for the learner's new address) what this one holds unsent or not durable."""
        with self._send_lock:
            to._carry[:0], self._carry = [*self._resend, *self._carry], []
            to._retained, self._retained, self._resend = self._retained, AckedWindow(0), []

    def stats(self) -> dict:
        """Counters since construction; `*_on_stream` are the current stream's totals."""
        out = dict(self._stats)
        st = self._stream
        out["credits"] = self.credits
        out.update(self._retained.stats())
        out["connected"] = self._connected_before  # reached the learner at least once
        out["granted_on_stream"] = st.granted if st is not None else 0
        out["sent_on_stream"] = st.sent if st is not None else 0
        return out

    def close(self) -> None:
        with self._send_lock:
            if self._stream is not None:
                self._stream.close()
                self._stream = None

    def wait_for_credits(self, n: int, timeout_s: float) -> CreditWait:
        """Block until this client may send min(n, its share of the buffer) trajectories.

        Workers call it before generating, so that data is not made while the learner's
        buffer is full (it would only grow stale waiting). GRANTED, TIMED_OUT, or ENDED when
        the stream ended or the client was aborted (send() then reconnects or says why).
        """
        with self._send_lock:
            st = self._stream or self._connect()
        deadline = time.monotonic() + timeout_s
        with st.cond:
            while not (st.ended or self._aborted.is_set()):
                if st.credits >= min(n, max(1, st.peak_credits)):
                    return CreditWait.GRANTED
                left = deadline - time.monotonic()
                if left <= 0:
                    return CreditWait.TIMED_OUT
                st.cond.wait(min(left, 1.0))
        return CreditWait.ENDED

    def abort(self) -> None:
        """From another thread: make a send() that waits for credits or acks raise Unavailable
        now (used at shutdown, when the learner has stopped granting credits)."""
        self._aborted.set()
        st = self._stream
        if st is not None:
            with st.cond:
                st.cond.notify_all()

    def __enter__(self) -> TrajectoryClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- sending -----------------------------------------------------------------------

    def send(self, trajs: list[Trajectory]) -> SendResult:
        """Send `trajs` in credit-sized batches and wait for every Ack.

        Raises Unavailable when credits or an Ack do not arrive within `timeout_s`, or when the
        learner stays unreachable after `max_retries` reconnects (and `reconnect_s`); what was
        not acked then is carried into the next send().
        """
        result = SendResult()
        if not trajs and not self._carry and not self._resend:
            return result
        with self._send_lock:
            ids = {t.id for t in trajs}
            carried = [t for t in self._carry if t.id not in ids]
            self._carry = []
            self._stats["carried"] += len(carried)
            # Encoded batch by batch as credits allow (the first batch leaves at once, and
            # encoding overlaps the learner's work on the previous batches).
            pending = collections.deque([*carried, *trajs])
            unacked: dict[int, tuple[float, list[Trajectory]]] = {}  # seq -> (sent at, batch)
            try:
                self._send_all(pending, unacked, result)
            except Unavailable:
                self._carry = [t for _, (_, ts) in sorted(unacked.items()) for t in ts]
                self._carry.extend(pending)
                raise
            finally:  # what was acked before a failure counts too
                self._stats["accepted"] += result.n_accepted
                self._stats["duplicate"] += result.n_duplicate
                self._stats["rejected"] += result.n_rejected
        return result

    def _send_all(self, pending: collections.deque, unacked: dict, result: SendResult) -> None:
        """send()'s loop, under the send lock: `pending` leaves as credits allow, `unacked`
        holds what is on the wire, `result` collects the Acks."""
        breaks, first_break = 0, 0.0
        credit_wait_since: float | None = None
        while pending or unacked:
            if self._aborted.is_set():
                raise Unavailable(f"trajectory client for {self.target}: aborted")
            st = self._stream or self._connect()
            if self._resend:  # a restarted learner: what it may lack goes first (retain.py)
                pending.extendleft(reversed(self._resend))
                self._resend = []
            with st.cond:
                for seq in [s for s in st.acks if s in unacked]:
                    ack, chunk = st.acks.pop(seq), unacked.pop(seq)[1]
                    _add_ack(result, ack, chunk)
                    self._retained.add(chunk, ack.learner_version, st.durable_version)
                self._retained.forget_below(st.durable_version)
                if st.ended:
                    # Re-send what was not acked, in the original order, on a new stream.
                    pending.extendleft(
                        reversed([t for _, (_, ts) in sorted(unacked.items()) for t in ts])
                    )
                    unacked.clear()
                    breaks += 1
                    first_break = first_break or time.monotonic()
                    self._drop_stream(st)
                    if st.error is not None and not grpc_util.is_retryable(st.error):
                        raise grpc_util.error_from_rpc(st.error, "trajectory stream")
                    broken_s = time.monotonic() - first_break
                    if breaks > self.max_retries and broken_s >= self.reconnect_s:
                        raise Unavailable(
                            f"trajectory stream to {self.target}: broke {breaks} times"
                        )
                    continue
                self._pump(st, pending, unacked)
                if not pending and not unacked:
                    break
                now = time.monotonic()
                if unacked:
                    credit_wait_since = None
                    seq0, (t0, _) = next(iter(unacked.items()))  # the oldest: seqs grow
                    left = t0 + self.timeout_s - now
                    what = f"ack for batch {seq0}"
                else:
                    if credit_wait_since is None:
                        credit_wait_since = now
                        self._stats["credit_waits"] += 1
                    left = credit_wait_since + self.timeout_s - now
                    what = "credits from the learner (it grants them as it consumes data)"
                if left <= 0:
                    self._drop_stream(st)
                    raise Unavailable(f"{what}: none within {self.timeout_s}s from {self.target}")
                st.pump = functools.partial(self._pump, st, pending, unacked)  # see _Stream
                try:
                    st.cond.wait(min(left, 1.0))
                finally:
                    st.pump = None
                if st.pump_error is not None:
                    error, st.pump_error = st.pump_error, None
                    raise error

    def _pump(self, st: _Stream, pending: collections.deque, unacked: dict) -> bool:
        """Under `st.cond`: send batches while credits allow (a partial batch only when none is
        on the wire: a fuller one follows once their Acks bring credits back); True when
        nothing is left for send() but to read the Acks (all sent, all acked)."""
        while pending and st.credits > 0:
            k = min(st.credits, self.batch_size, len(pending))
            if unacked and k < min(self.batch_size, len(pending)) and not _all_acked(st, unacked):
                break
            seq = next(self._seq)
            chunk = [pending.popleft() for _ in range(k)]
            st.put(batch_to_columns(seq, chunk), k)
            unacked[seq] = (time.monotonic(), chunk)
            self._stats["sent"] += k
            self._stats["batches"] += 1
        return not pending and _all_acked(st, unacked)

    # ---- connecting --------------------------------------------------------------------

    def _connect(self) -> _Stream:
        """Open a stream (hello -> initial credits), retrying UNAVAILABLE and a hello left
        unanswered for `timeout_s` (a port that accepts but never speaks) with backoff:
        `max_retries` times, and on until `reconnect_s` have passed; abort() ends the wait."""
        last = "no attempt"
        t0 = time.monotonic()
        for attempt in itertools.count():
            if attempt > self.max_retries and time.monotonic() - t0 >= self.reconnect_s:
                break
            if attempt and self._aborted.wait(grpc_util.backoff_s(attempt - 1)):
                raise Unavailable(f"trajectory client for {self.target}: aborted")
            st = _Stream(self.target, self.worker_id, self._ca_cert, self._token)
            with st.cond:
                st.cond.wait_for(lambda s=st: s.ready or s.ended, timeout=self.timeout_s)
                ready, ended, error = st.ready, st.ended, st.error
            if ready:
                self._stream = st
                self._resend.extend(self._retained.on_stream(st.incarnation))
                if self._connected_before:
                    self._stats["reconnects"] += 1
                self._connected_before = True
                return st
            st.close()
            self._stats["connect_failures"] += 1
            if error is not None and not grpc_util.is_retryable(error):
                raise grpc_util.error_from_rpc(error, "trajectory stream hello")
            last = error.details() if error is not None else "stream closed"
            last = last if ended else f"no hello ack within {self.timeout_s}s"
        raise Unavailable(
            f"trajectory stream to {self.target}: {attempt} attempts in "
            f"{time.monotonic() - t0:.1f}s failed ({last})"
        )

    def _drop_stream(self, st: _Stream) -> None:
        st.close()
        if self._stream is st:
            self._stream = None


def _all_acked(st: _Stream, unacked: dict) -> bool:
    """Every batch of `unacked` has its Ack on `st` (read, not yet folded into the result)."""
    return all(seq in st.acks for seq in unacked)
