"""What a reopened spool holds, found by replaying its journal line by line (actors/spool.py).

The journal keeps the id of everything the worker ever sent (its audit), so it grows with the
run: 185,000 ids after a 30-minute soak. A restarted worker needs only the ids still held, so
`replay` streams the journal through the same transitions the live spool made (sent, answered,
durable, released, dropped) and keeps per-id state only while an id is held: its memory is
what the spool held at the worst moment of the journal (the credits plus the answered window,
`retain_acked`), not the run's length. (Reading it whole, the way the driver's report does with
`read_journal`, took 75 MiB of Python objects at that size, which the worker's heap then kept.)
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path

from rewardloop.run_outputs import iter_records


def note_answer(answers: dict, tid: str, inc: str, version: int) -> None:
    """Record that `inc` answered `tid` at `version` (its first answer from `inc` counts)."""
    if not inc:
        answers.pop(tid, None)  # final: nothing to wait for
    elif answers.get(tid, ("",))[0] != inc:
        answers[tid] = (inc, version)


def covered(answer: tuple[str, int] | None, durable: dict[str, int]) -> bool:
    """An answer is durable once its process's checkpoint version is above the answer's."""
    return answer is None or durable.get(answer[0], 0) > answer[1]


@dataclass
class Replayed:
    """A journal's end state: held ids (-> segment), their answers, and the counts."""

    held: dict[str, int] = field(default_factory=dict)
    answers: collections.OrderedDict = field(default_factory=collections.OrderedDict)
    durable: dict[str, int] = field(default_factory=dict)
    max_seg: int = 0
    spooled: int = 0
    acked: int = 0
    dropped: int = 0
    released: int = 0
    peak_held: int = 0  # the most ids held at once while replaying (its memory bound)


def replay(path: Path, retain_acked: int) -> Replayed:
    """Replay the journal at `path` as a spool with this `retain_acked` would have lived it."""
    r = Replayed()
    acked_once: set[str] = set()  # of the held ids, those answered at least once (counted)

    def forget(ids) -> None:
        for tid in ids:
            r.held.pop(tid, None)
            r.answers.pop(tid, None)
            acked_once.discard(tid)

    for record in iter_records(path):
        if "sent" in record:
            seg = int(record.get("seg", 0))
            r.max_seg = max(r.max_seg, seg)
            for tid in record["sent"]:
                r.spooled += tid not in r.held
                r.held[tid] = seg
            r.peak_held = max(r.peak_held, len(r.held))
        if "acked" in record:
            inc, version = str(record.get("inc", "")), int(record.get("v", 0))
            ids = record["acked"]
            first = [t for t in ids if t in r.held and t not in acked_once]
            r.acked += len(first)  # each id once (the live spool answers only held ids)
            acked_once.update(first)
            if not inc or not retain_acked:
                forget(ids)
            else:
                for tid in ids:
                    if tid in r.held:
                        note_answer(r.answers, tid, inc, version)
                forget([t for t in ids if t in r.held and covered(r.answers.get(t), r.durable)])
        if "durable" in record:
            inc = str(record.get("inc", ""))
            r.durable[inc] = max(r.durable.get(inc, 0), int(record["durable"]))
            forget([t for t, (i, v) in r.answers.items() if i == inc and v < r.durable[inc]])
        if "released" in record:
            r.released += len(record["released"])
            forget(record["released"])
        if "dropped" in record:
            r.dropped += len(record["dropped"])
            forget([item[0] for item in record["dropped"]])
    return r
