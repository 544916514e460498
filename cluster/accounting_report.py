"""The run's accounting, computed from what is on disk: the workers' spools and the learner's audit.

    generated        ids in any worker's spool journal (sent, or dropped by the worker itself)
    trained, stale,  ids whose outcome the learner's audit (audit/learner.jsonl) records, plus the
    expired,         worker's own drops (an expired rating, a non-finite reward: the journal's
    rejected         "dropped")
    in_flight_at_end ids with no outcome that were still in the learner's buffer or step when it
                     stopped (audit/learner_in_flight.json), or unacked in a worker's spool
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
from pathlib import Path

from rewardloop.actors.spool import JOURNAL, read_journal, read_jsonl, spool_root
from rewardloop.config import RunConfig, replace
from rewardloop.learner.accounting import AUDIT_FILE, IN_FLIGHT_FILE, OUTCOMES

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


def _journals(root: Path) -> dict[str, dict]:
    if not root.is_dir():
        return {}
    return {
        d.name: read_journal(d)
        for d in sorted(root.iterdir())
        if d.is_dir() and (d / JOURNAL).exists()
    }


def _learner_audit(audit_dir: Path) -> tuple[dict[str, dict], Counter, list[dict]]:
    """First outcome line per id, outcome lines per id, and the duplicate lines (with the
    `maybe_duplicate` refusals of ids that already had their outcome)."""
    first: dict[str, dict] = {}
    per_id: Counter[str] = Counter()
    duplicates = []
    for line in read_jsonl(audit_dir / AUDIT_FILE):
        outcome = line.get("outcome")
        if outcome == "duplicate":
            duplicates.append(line)
        elif outcome in OUTCOMES:
            tid = line.get("id", "")
            if tid in first and line.get("maybe_duplicate") and outcome != "trained":
                duplicates.append(line)  # a forgotten id re-sent: refused, already decided
                continue
            per_id[tid] += 1
            first.setdefault(tid, line)
    return first, per_id, duplicates


def _in_flight(audit_dir: Path) -> tuple[set[str], bool]:
    try:
        record = json.loads((audit_dir / IN_FLIGHT_FILE).read_text())
    except (OSError, ValueError):
        return set(), False
    return set(record.get("buffered", {})) | set(record.get("taken", {})), True


def account(cfg: RunConfig) -> tuple[dict, list[dict]]:
    """(the accounting section of summary.json, the joined audit lines)."""
    audit_dir = Path(cfg.out) / "audit"
    journals = _journals(spool_root(cfg))
    outcomes, per_id, duplicates = _learner_audit(audit_dir)
    in_flight, snapshot = _in_flight(audit_dir)
    joined: list[dict] = []
    totals: Counter[str] = Counter({k: 0 for k in FIELDS})
    by_worker: dict[str, Counter] = {}
    seen: set[str] = set()
    for worker_id, journal in journals.items():
        mine = by_worker.setdefault(worker_id, Counter({k: 0 for k in FIELDS}))
        unacked = set(journal["sent"]) - journal["acked"]
        for tid in [*journal["sent"], *(t for t in journal["dropped"] if t not in journal["sent"])]:
            if tid in seen:  # one id in two spools would be a bug in id generation
                totals["outcome_conflicts"] += 1
                continue
            seen.add(tid)
            line = {"id": tid, "worker": worker_id}
            if tid in outcomes:
                learner = outcomes[tid]
                line.update(
                    outcome=learner["outcome"],
                    source="learner",
                    **{k: learner[k] for k in ("version", "step", "reason") if k in learner},
                )
            elif tid in journal["dropped"]:
                outcome, reason = journal["dropped"][tid]
                line.update(outcome=outcome, source="worker", reason=reason)
            elif tid in in_flight:
                line.update(outcome="in_flight_at_end", source="learner")
            elif tid in unacked:
                line.update(outcome="in_flight_at_end", source="worker spool (unacked)")
            else:
                line.update(outcome="lost", source="")
            for counter in (totals, mine):
                counter["generated"] += 1
                counter[line["outcome"]] += 1
            joined.append(line)
    outside = [line for tid, line in outcomes.items() if tid not in seen]
    for line in outside:
        joined.append({**line, "source": "learner (no spool)"})
    for line in duplicates:
        totals["duplicates_ignored"] += 1
        mine = by_worker.get(line.get("worker", ""))
        if mine is not None:
            mine["duplicates_ignored"] += 1
    section = {k: totals[k] for k in FIELDS}
    section.update(
        outside_spools=len(outside),
        outcome_conflicts=totals["outcome_conflicts"] + sum(1 for n in per_id.values() if n > 1),
        learner_in_flight_recorded=snapshot,
        workers={w: {k: c[k] for k in FIELDS} for w, c in by_worker.items()},
    )
    return section, joined


def write_joined(cfg: RunConfig) -> dict:
    """Compute the accounting, write `<run_dir>/audit.jsonl`, return the summary section."""
    section, joined = account(cfg)
    path = Path(cfg.out) / JOINED
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for line in joined:
            f.write(json.dumps(line, separators=(",", ":")) + "\n")
    tmp.replace(path)
    section["audit"] = str(path)
    return section
