"""`rewardloop chaos`: train while SIGKILLing rollout workers and the learner, then prove that
nothing was lost and nothing trained twice.

    rewardloop chaos --kill-workers 2 --kill-learner 1 --max-steps 60 [--duration-s D] [--seed S]

The faults are spread at random (seeded) over the run: over steps 15 %..60 % of `--max-steps`
(so steps are left after the last fault for its recovery to show),
or over 10 %..90 % of `--duration-s` (then the run trains until that time and stops as
`rewardloop stop` does). Each is a SIGKILL of a process: a random running rollout worker's, or
the learner's (the next learner kill waits until Ray has restarted it). Faults come one at a
time: each waits until the run has absorbed the one before (`_Chaos._absorbed`), so a worker
and the learner are never killed together (that would take both copies of what the learner had
acked since its last checkpoint: a correlated fault this command does not inject). The run itself is an
ordinary `Run` (learner.max_restarts and rollout.max_restarts are raised to cover the kills),
and `eval.target` is off, so the run lasts its whole schedule. Its own machinery has to
absorb the faults: worker restarts with their spools, learner restarts from the resume
checkpoint, workers re-sending what a restarted learner lacks.

It prints one JSON object (also written to `<run_dir>/chaos.json`): the faults (kind, seconds into the run, step, pid), the accounting
from summary.json, the ids the audit shows trained more than once, the restarts the run saw,
and the resident memory of each learner and worker process (sampled every `RSS_EVERY_S` from
/proc: processes on this machine only; the trace in `<run_dir>/chaos_rss.jsonl`). Exit status 1
when `lost` is not 0, an id was trained twice, a fault could not be injected, or the run failed.

Memory, per process (`rss`): start, end and max MiB of VmRSS, and the same of its two parts
that move: `anon` (RssAnon: the process's own heap and anonymous mappings, where a leak would
show) and `shmem` (RssShmem: the pages of Ray's object store that the process has touched:
every weight version goes through it, `ray.put` in the learner and `ray.get` in each worker,
and a page once touched stays counted in both until the process exits, so this part climbs in
steps of one version (2.5 MiB for the default model) until the store's busiest moment is
covered; it is the store's, bounded by its size, not the process's). The rest of VmRSS is the
mapped libraries. `slope_per_1000_steps` is the least-squares slope in MiB per 1,000 of the
run's steps of each, over the samples after the process's first quarter (its warm-up).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import random
import signal
import threading
import time
from pathlib import Path

from rewardloop.config import RunConfig, replace
from rewardloop.errors import RewardLoopError
from rewardloop.learner.accounting import read_audit

log = logging.getLogger(__name__)
RSS_EVERY_S = 2.0
FAULT_TIMEOUT_S = 600.0  # longest a scheduled fault waits for its moment (or a learner to return)


def schedule(
    rng: random.Random, workers: int, learners: int, max_steps: int, duration_s: float | None
) -> list[dict]:
    """The faults in order: {"kind", "at_step"} or {"kind", "at_s"} (random, seeded)."""
    kinds = ["worker"] * workers + ["learner"] * learners
    if duration_s:
        at = sorted(rng.uniform(0.1, 0.9) * duration_s for _ in kinds)
        rng.shuffle(kinds)
        return [{"kind": k, "at_s": round(t, 1)} for k, t in zip(kinds, at, strict=True)]
    lo, hi = max(1, int(0.15 * max_steps)), max(2, int(0.60 * max_steps))
    at = sorted(rng.randint(lo, hi) for _ in kinds)
    rng.shuffle(kinds)
    return [{"kind": k, "at_step": s} for k, s in zip(kinds, at, strict=True)]


MEMORY_FIELDS = {"VmRSS": "rss", "RssAnon": "anon", "RssShmem": "shmem"}


def _memory_mib(pid: int) -> dict[str, float] | None:
    """{"rss", "anon", "shmem"} MiB of a live process (/proc/PID/status), None when it is gone."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in MEMORY_FIELDS:
                out[MEMORY_FIELDS[key]] = int(value.split()[0]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return out if len(out) == len(MEMORY_FIELDS) else None


def slope_per_1000(steps: list[int], values: list[float]) -> float | None:
    """Least-squares slope of values over steps, per 1,000 steps (None: fewer than 2 steps)."""
    n = len(steps)
    if n < 2 or len(set(steps)) < 2:
        return None
    ms, mv = sum(steps) / n, sum(values) / n
    num = sum((x - ms) * (y - mv) for x, y in zip(steps, values, strict=True))
    return 1000 * num / sum((x - ms) ** 2 for x in steps)


def memory_report(samples: list[tuple[int, dict]]) -> dict:
    """One process's figures (the module doc) from its (step, _memory_mib) samples."""
    rest = samples[len(samples) // 4 :]  # after the warm-up
    out: dict = {"samples": len(samples), "steps": [samples[0][0], samples[-1][0]]}
    for part in MEMORY_FIELDS.values():
        xs = [m[part] for _, m in samples]
        slope = slope_per_1000([s for s, _ in rest], [m[part] for _, m in rest])
        out[part] = {
            "start_mib": round(xs[0], 1),
            "after_warmup_mib": round(rest[0][1][part], 1),
            "end_mib": round(xs[-1], 1),
            "max_mib": round(max(xs), 1),
            "slope_per_1000_steps": None if slope is None else round(slope, 2),
        }
    return out


class _Chaos:
    """The fault thread and the RSS sampler of one run."""

    def __init__(self, run, plan: list[dict], rng: random.Random, duration_s: float | None):
        self.run, self.plan, self.rng, self.duration_s = run, plan, rng, duration_s
        self.faults: list[dict] = []
        self.failures: list[str] = []
        self.rss: dict[tuple[str, int], list[tuple[int, dict]]] = collections.defaultdict(list)
        self.done = threading.Event()
        self.t0 = time.monotonic()

    # ---- what the run is doing ------------------------------------------------------------

    def _started(self) -> bool:
        return self.run.calls is not None and self.run.pool is not None and bool(self.run.steps)

    def _learner_pid(self) -> tuple[int, str]:
        info = self.run.calls("incarnation")
        return info["pid"], info["incarnation"]

    def _worker_pids(self) -> list[tuple[str, int]]:
        import ray

        out = []
        for worker_id, actor, ref in list(self.run.pool.workers):
            if ref is None:
                continue
            try:
                out.append((worker_id, ray.get(actor.pid.remote(), timeout=10)))
            except Exception:  # noqa: BLE001 - restarting or gone: not a target now
                continue
        return out

    # ---- faults -------------------------------------------------------------------------

    def faults_loop(self) -> None:
        try:
            for fault in self.plan:
                if not self._wait_for(fault):
                    self.failures.append(f"{fault}: its moment never came")
                    return
                self._inject(fault["kind"])
            if self.duration_s:
                self._wait_until(lambda: time.monotonic() - self.t0 >= self.duration_s)
                if not self.done.is_set():
                    self.run.scaler.requests.stop_requested.set()  # as `rewardloop stop` does
        except Exception as exc:  # noqa: BLE001 - reported in the JSON, never a silent thread
            log.exception("chaos: fault thread failed")
            self.failures.append(f"{type(exc).__name__}: {exc}")

    def _wait_until(self, ready, timeout_s: float | None = None) -> bool:
        deadline = time.monotonic() + (timeout_s or FAULT_TIMEOUT_S + (self.duration_s or 0))
        while not self.done.is_set() and time.monotonic() < deadline:
            if ready():
                return True
            self.done.wait(0.2)  # polls the run's progress; the condition is checked above
        return False

    def _wait_for(self, fault: dict) -> bool:
        if "at_s" in fault:
            reached = lambda: time.monotonic() - self.t0 >= fault["at_s"]  # noqa: E731
        else:
            reached = lambda: len(self.run.steps) >= fault["at_step"]  # noqa: E731
        return self._wait_until(lambda: self._started() and reached() and self._absorbed(fault))

    def _absorbed(self, fault: dict) -> bool:
        """The previous fault is behind the run, so that two faults never make one that the
        run's design does not cover (both copies of a trajectory gone at once):

        - a learner kill after a worker kill waits for a resume checkpoint newer than the
          learner's version at that kill: what the dead worker had acked but not yet durable
          (kept only in its memory, actors/retain.py) is then in the checkpoint;
        - a worker kill after a learner kill waits until the driver logged a step past the
          kill: the restarted learner trains again, so the workers have reconnected and re-sent
          what the dead learner had acked since its checkpoint.

        Without resume checkpoints on a schedule (learner.checkpoint_every_steps=0) the first
        cannot be waited for, and is not."""
        if not self.faults:
            return True
        last = self.faults[-1]
        if fault["kind"] == "learner" and last["kind"] == "worker":
            if not self.run.cfg.learner.checkpoint_every_steps:
                return True
            try:
                checkpoint = self.run.calls("status")["checkpoint"]
            except RewardLoopError:
                return False
            return checkpoint.get("durable_version", 0) > last["learner_version"]
        if fault["kind"] == "worker" and last["kind"] == "learner":
            return len(self.run.steps) > last["step"]
        return True

    def _inject(self, kind: str) -> None:
        if kind == "learner":
            # the learner of the previous kill must be back (a new incarnation answering)
            previous = {f["incarnation"] for f in self.faults if f["kind"] == "learner"}
            found: dict = {}

            def alive() -> bool:
                try:
                    pid, inc = self._learner_pid()
                except RewardLoopError:
                    return False
                found.update(pid=pid, incarnation=inc)
                return inc not in previous

            if not self._wait_until(alive):
                self.failures.append("learner kill: the restarted learner never answered")
                return
            pid, target = found["pid"], found["incarnation"]
        else:
            candidates: list = []

            def running() -> bool:
                candidates[:] = self._worker_pids()
                return bool(candidates)

            if not self._wait_until(running):
                self.failures.append("worker kill: no running worker to kill")
                return
            target, pid = self.rng.choice(candidates)
        extra = {}
        if kind == "worker":  # what it acked so far is durable once a checkpoint passes this
            try:
                extra["learner_version"] = self.run.calls("status")["version"]
            except RewardLoopError:
                extra["learner_version"] = 0
        os.kill(pid, signal.SIGKILL)
        record = {
            "kind": kind,
            "time_s": round(time.monotonic() - self.t0, 2),
            "step": len(self.run.steps),
            "pid": pid,
            ("incarnation" if kind == "learner" else "worker_id"): target,
            **extra,
        }
        self.faults.append(record)
        log.warning("chaos: SIGKILL %s", record)

    # ---- memory -------------------------------------------------------------------------

    def rss_loop(self) -> None:
        while not self.done.wait(RSS_EVERY_S):
            if not self._started():
                continue
            try:
                pids = [("learner", self._learner_pid()[0])]
                pids += [("worker", pid) for _, pid in self._worker_pids()]
            except Exception:  # noqa: BLE001 - a restart in progress: sample next time
                continue
            step = len(self.run.steps)
            line: dict = {"t": round(time.monotonic() - self.t0, 1), "step": step}
            for role, pid in pids:
                mib = _memory_mib(pid)
                if mib is not None:
                    self.rss[(role, pid)].append((step, mib))
                    line[f"{role}-{pid}"] = round(mib["rss"], 1)  # VmRSS; its parts below
                    line.setdefault("anon", {})[f"{role}-{pid}"] = round(mib["anon"], 1)
                    line.setdefault("shmem", {})[f"{role}-{pid}"] = round(mib["shmem"], 1)
            with (Path(self.run.cfg.out) / "chaos_rss.jsonl").open("a") as f:  # a soak's trace
                f.write(json.dumps(line) + "\n")

    def rss_report(self) -> dict:
        out: dict[str, list[dict]] = {"learner": [], "worker": []}
        for (role, pid), samples in self.rss.items():
            rss = [m["rss"] for _, m in samples]
            out[role].append(
                {
                    "pid": pid,
                    "start_mib": round(rss[0], 1),
                    "end_mib": round(rss[-1], 1),
                    "max_mib": round(max(rss), 1),
                    "growth_mib": round(rss[-1] - rss[0], 1),
                    **memory_report(samples),
                }
            )
        return out


def trained_twice(out: Path) -> list[str]:
    """Ids the learner's audit records as trained more than once (must be none)."""
    counts = collections.Counter(
        r["id"] for r in read_audit(out / "audit" / "learner.jsonl") if r["outcome"] == "trained"
    )
    return sorted(i for i, n in counts.items() if n > 1)


def chaos(
    cfg: RunConfig,
    kill_workers: int,
    kill_learner: int,
    duration_s: float | None = None,
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """Run `cfg` under the faults; returns the report (see the module doc)."""
    lc, rc = cfg.learner, cfg.rollout
    changes = {
        "learner": {"max_restarts": max(lc.max_restarts, kill_learner)},
        "rollout": {"max_restarts": max(rc.max_restarts, kill_workers)},
        "eval": {"target": 0.0},  # the faults' schedule, not an early eval.target, ends it
    }
    if duration_s:
        changes["learner"]["max_steps"] = 10**9  # the clock ends it, not a step count
    cfg = replace(cfg, **changes)
    from .run import Run  # here: `rewardloop --help` should not wait for Ray to import

    rng = random.Random(seed)
    plan = schedule(rng, kill_workers, kill_learner, cfg.learner.max_steps, duration_s)
    run = Run(cfg, progress=progress)
    state = _Chaos(run, plan, rng, duration_s)
    threads = [
        threading.Thread(target=state.faults_loop, name="chaos-faults", daemon=True),
        threading.Thread(target=state.rss_loop, name="chaos-rss", daemon=True),
    ]
    for t in threads:
        t.start()
    error = ""
    try:
        run.execute()
    except RewardLoopError as exc:
        error = str(exc)
    finally:
        state.done.set()
        for t in threads:
            t.join(timeout=30)
    out = Path(cfg.out)
    summary_file = out / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    twice = trained_twice(out)
    accounting = summary.get("accounting", {})
    report = {
        "plan": plan,
        "faults": state.faults,
        "faults_by_kind": dict(collections.Counter(f["kind"] for f in state.faults)),
        "fault_failures": state.failures,
        "accounting": accounting,
        "trained_twice": len(twice),
        "trained_twice_ids": twice[:10],
        "steps": summary.get("steps"),
        "seconds": round(time.monotonic() - state.t0, 1),
        "learner_restarts": summary.get("learner_restarts", []),
        "worker_restarts": summary.get("worker_restarts", {}),
        "rss": state.rss_report(),
        "error": error or summary.get("error", ""),
        "run_dir": str(out),
    }
    report["ok"] = bool(
        accounting
        and accounting.get("lost") == 0
        and not twice
        and not state.failures
        and len(state.faults) == len(plan)
        and not report["error"]
    )
    # also on disk: Ray's own log lines share the driver's stdout
    (out / "chaos.json").write_text(json.dumps(report, indent=2, sort_keys=True, default=str))
    return report


def command(cfg: RunConfig, args) -> int:
    """The CLI's `chaos`: prints the report as JSON; 0 only when nothing was lost or doubled."""
    report = chaos(
        cfg, args.kill_workers, args.kill_learner, args.duration_s, args.seed, not args.quiet
    )
    print(json.dumps(report, indent=2, sort_keys=True, default=str), flush=True)
    return 0 if report["ok"] else 1


def add_arguments(parser, config_args) -> None:
    """`rewardloop chaos` options (the CLI adds --config / --set with `config_args`)."""
    config_args(parser)
    parser.add_argument("--kill-workers", type=int, default=1, help="rollout worker SIGKILLs")
    parser.add_argument("--kill-learner", type=int, default=1, help="learner SIGKILLs")
    parser.add_argument("--max-steps", type=int, help="optimizer steps (learner.max_steps)")
    parser.add_argument(
        "--duration-s", type=float, help="train this long instead of to max-steps (a soak)"
    )
    parser.add_argument("--out", help="run directory (default runs/latest)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault schedule")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
