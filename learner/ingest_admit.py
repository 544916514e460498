"""The ingest server's admission of one decoded batch: each row's verdict, in row order.

Per row: its decoding verdict (an `InvalidInput` naming the field), a duplicate (its id already
has an outcome in the ledger, or an earlier row of the batch decided it), a worker mismatch,
or the buffer's verdict. The common batch (every row new, valid and the stream's worker's,
no id twice) is checked with whole-batch expressions and goes into the buffer in one
`add_batch`, with no per-row Python beyond the buffer's; any doubt takes the row-by-row path,
so every row gets exactly the verdict it got before the fast path existed.
"""

from __future__ import annotations

from collections.abc import Callable

from rewardloop.errors import InvalidInput
from rewardloop.learner.buffer import TrajectoryBuffer
from rewardloop.trajectory import Trajectory

_DUPLICATE, _ACCEPTED = ("duplicate", ""), ("accepted", "")


def _worker_mismatch(sent: str, hello: str) -> str:
    return f"worker_id: {sent!r} differs from the stream's hello worker_id {hello!r}"


def admit_rows(
    buffer: TrajectoryBuffer,
    reject: Callable,
    worker: str,
    ack,
    ids: list[str],
    decoded: list,
    version: int,
):
    """Each decoded row's verdict, in row order: (accepted ids, duplicate ids); rejections
    go into `ack`. An id that already has an outcome is a duplicate (e.g. rejected, then
    re-sent by a restarted worker); the ledger is asked once per batch, and a row rejected
    here gets its outcome too, so a later row with its id is a duplicate. With no id twice
    in the batch, no row's verdict depends on another's id: the buffer admits the rows in
    one `add_batch`; else one `add` at a time, in order, as the verdicts then interleave."""
    ledger = buffer.ledger
    m = len(decoded)
    decided = ledger.decided_among(ids[:m])
    unique = len(set(ids)) == len(ids)
    if (  # the common case in whole-batch checks: every row new, valid, this worker's
        unique
        and not decided
        and set(map(type, decoded)) == {Trajectory}
        and {t.worker_id for t in decoded} <= {"", worker}
    ):
        for t in decoded:
            t.worker_id = worker
        verdicts = buffer.add_batch(decoded, version)
        if verdicts.count(_ACCEPTED) == m:
            return ids[:m], []
        admitted = iter(verdicts)  # some row refused by the buffer: one by one below
        verdicts = [None] * m
    else:
        verdicts = _row_verdicts(ids, decoded, decided, worker)
        if unique:
            rows = [x for x, v in zip(decoded, verdicts, strict=True) if v is None]
            admitted = iter(buffer.add_batch(rows, version))
    accepted: list[str] = []
    duplicate: list[str] = []
    for tid, item, verdict in zip(ids, decoded, verdicts, strict=False):
        if isinstance(verdict, InvalidInput):
            reject(ack, "" if verdict.field == "id" else tid, str(verdict))
            if verdict.field != "id":
                decided.add(tid)
            continue
        if not unique and tid in decided:  # an earlier row of this batch decided it
            verdict = _DUPLICATE
        elif verdict is None:
            verdict = next(admitted) if unique else buffer.add(item, version)
        status, reason = verdict
        if status == "accepted":
            accepted.append(tid)
        elif status == "duplicate":
            ledger.duplicate(tid, worker)
            duplicate.append(tid)
        else:
            reject(ack, tid, reason, worker, version)
            decided.add(tid)
    return accepted, duplicate


def _row_verdicts(ids: list[str], decoded: list, decided: set, worker: str) -> list:
    """Per row: its InvalidInput, (status, reason), or None (for the buffer to decide)."""
    verdicts: list = []
    for tid, item in zip(ids, decoded, strict=False):
        if isinstance(item, InvalidInput):
            verdicts.append(item)
        elif tid in decided:
            verdicts.append(_DUPLICATE)
        elif item.worker_id and item.worker_id != worker:
            verdicts.append(("rejected", _worker_mismatch(item.worker_id, worker)))
        else:
            item.worker_id = worker
            verdicts.append(None)
    return verdicts
