"""The run's accounting, computed from what is on disk: the workers' spools and the learner's audit.

    generated        ids in any worker's spool journal (sent, or dropped by the worker itself)
    trained, stale,  ids whose outcome the learner's audit (audit/learner.jsonl) records, plus the
    expired,         worker's own drops (an expired rating, a non-finite reward: the journal's
    rejected         "dropped")
    in_flight_at_end ids with no outcome that were still in the learner's buffer or step when it
                     stopped (audit/learner_in_flight.json), or unacked in a worker's spool, or
                     held there answered only by a learner process that died uncovered by a
                     checkpoint, the worker never having met the final one (accounting_join)
    lost             generated ids with none of the above: never assumed to be 0, counted
    duplicates_ignored  re-sent ids the learner ignored (audit lines with outcome "duplicate",
                     and refusals marked `maybe_duplicate` of ids whose outcome is already there)

so generated == trained + stale + expired + rejected + in_flight_at_end + lost. Also reported:
`outside_spools` (outcomes of ids no spool has: an external `rewardloop worker`, a rejected
trajectory without an id), `outcome_conflicts` (ids with two outcomes: 0 unless something is
wrong; a trajectory trained twice would show here) and, per worker, the same figures. The
learner forgets ids older than its staleness window (learner/recent_ids.py) and refuses a
re-send of one as stale, marked `maybe_duplicate`: that line is a duplicate when the audit
already holds the id's outcome (e.g. stale re-send of an already-trained id), else the id's
outcome; a `trained` line is never such a mark, so training twice is always a conflict.

`write_joined` leaves `<run_dir>/audit.jsonl`: one line per id with its one outcome, where it
came from, and the learner's version, step or reason. `prepare` runs before a fresh run: it
makes rollout.spool_dir absolute (actors write there) and clears what an earlier run in the same
directory left (its spools and audit), so the figures are this run's alone.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from rewardloop.actors.spool import JOURNAL, spool_root
from rewardloop.config import RunConfig, replace
from rewardloop.learner.accounting import AUDIT_FILE, IN_FLIGHT_FILE, OUTCOMES

from .accounting_join import Join

JOINED = "audit.jsonl"
FIELDS = ("generated", *OUTCOMES, "duplicates_ignored", "in_flight_at_end", "lost")


def prepare(cfg: RunConfig, fresh: bool = True) -> RunConfig:
    """cfg with rollout.spool_dir absolute; with `fresh`, this run's spools and audit cleared."""
    root = spool_root(cfg).expanduser().absolute()
    if fresh:
        if root.is_dir():
            for worker_dir in root.iterdir():
                if (worker_dir / JOURNAL).exists():
                    shutil.rmtree(worker_dir)
        out = Path(cfg.out)
        shutil.rmtree(out / "audit", ignore_errors=True)
        (out / JOINED).unlink(missing_ok=True)
    return replace(cfg, rollout={"spool_dir": str(root)})


def _in_flight(audit_dir: Path) -> tuple[set[str], bool, str]:
    """(ids in flight as the learner stopped, whether it recorded them, which process did)."""
    try:
        record = json.loads((audit_dir / IN_FLIGHT_FILE).read_text())
    except (OSError, ValueError):
        return set(), False, ""
    ids = set(record.get("buffered", {})) | set(record.get("taken", {}))
    return ids, True, str(record.get("incarnation", ""))


def _account(cfg: RunConfig, emit: Callable[[dict], object]) -> dict:
    """The accounting section; each joined line goes to `emit` as it is made (accounting_join.py:
    the ids wait in a temporary SQLite file, not in memory)."""
    audit_dir, root = Path(cfg.out) / "audit", spool_root(cfg)
    in_flight, snapshot, final = _in_flight(audit_dir)
    totals: Counter[str] = Counter({k: 0 for k in FIELDS})
    by_worker: dict[str, Counter] = {}
    outside = 0
    with Join(Path(cfg.out)) as join:
        workers = sorted(d for d in root.iterdir() if d.is_dir()) if root.is_dir() else []
        for d in workers:
            if (d / JOURNAL).exists():
                join.add_journal(d.name, d / JOURNAL)
                by_worker[d.name] = Counter({k: 0 for k in FIELDS})
        join.add_audit(audit_dir / AUDIT_FILE)

        def conflict() -> None:
            totals["outcome_conflicts"] += 1

        for line in join.joined(in_flight, conflict, final):
            if line.get("source") == "learner (no spool)":
                outside += 1
            else:
                for counter in (totals, by_worker[line["worker"]]):
                    counter["generated"] += 1
                    counter[line["outcome"]] += 1
            emit(line)
        two_outcomes = join.ids_with_two_outcomes()
        duplicates = join.duplicates
    totals["duplicates_ignored"] = sum(duplicates.values())
    for worker, n in duplicates.items():
        if worker in by_worker:
            by_worker[worker]["duplicates_ignored"] += n
    section = {k: totals[k] for k in FIELDS}
    section.update(
        outside_spools=outside,
        outcome_conflicts=totals["outcome_conflicts"] + two_outcomes,
        learner_in_flight_recorded=snapshot,
        workers={w: {k: c[k] for k in FIELDS} for w, c in by_worker.items()},
    )
    return section


def account(cfg: RunConfig) -> tuple[dict, list[dict]]:
    """(the accounting section of summary.json, the joined audit lines: a list, for tests and
    small runs; `write_joined` streams them to the file instead)."""
    joined: list[dict] = []
    return _account(cfg, joined.append), joined


def write_joined(cfg: RunConfig) -> dict:
    """Compute the accounting, write `<run_dir>/audit.jsonl`, return the summary section."""
    path = Path(cfg.out) / JOINED
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        section = _account(
            cfg, lambda line: f.write(json.dumps(line, separators=(",", ":")) + "\n")
        )
    tmp.replace(path)
    section["audit"] = str(path)
    return section
