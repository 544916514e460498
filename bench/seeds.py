"""`bench seeds`: does the default news feed reach the target for every seed, and why not?

Issue 14 asks that every reader reach eval.target (0.85) within learner.max_steps for 20 of 20
seeds. One seed is one `rewardloop train --set seed=K` in its own subprocess (its own Ray), run
one after the other so the runs do not share the CPUs with each other. Reached / not reached is
the robust figure (time on a shared machine is not); the table also says, per seed, the steps
and seconds to the target, the lowest reader at the end, every reader's final rate, and what a
failing run looked like: the entropy and reward of its lowest reader over the last steps, to
tell a stuck reader (reward ~0.1, low entropy: settled on a disliked topic) from a collapse
(reward ~0, malformed text) or slow progress.

    rewardloop bench seeds --json [--seeds 20] [--first-seed 0] [--algorithm grpo,rloo]
                               [--keep DIR] [--timeout-s 900] [--set learner.lr=...]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rewardloop.bench import common
from rewardloop.run_outputs import read_records

TAIL_STEPS = 40  # steps at the end of a run whose entropy and reward describe how it ended
STOP_GRACE_S = 60.0  # a run past --timeout-s gets this long to stop its Ray after SIGTERM


def run_seed(
    seed: int, algorithm: str, overrides: list[str], out: Path, timeout_s: float, retries: int
) -> dict:
    """One `rewardloop train` in a fresh process; the figures read back from its run directory.

    A run that fails before its first step (no training step in metrics.jsonl: e.g. a module
    that does not import, or a worker that crashed at start, on a tree that other work is
    editing) is not a learning failure: it is run again, up to `retries` times, and reported
    as an error if it never starts."""
    for attempt in range(1, retries + 2):
        shutil.rmtree(out, ignore_errors=True)
        res = _train_once(seed, algorithm, overrides, out, timeout_s)
        res["attempts"] = attempt
        if res.get("steps_done") or "error" not in res:
            return res
    res["reached"] = None  # never started: neither reached nor failed to learn
    return res


def _train_once(seed: int, algorithm: str, overrides: list[str], out: Path, timeout_s: float):
    cmd = [
        sys.executable,
        "-m",
        "rewardloop.cli",
        "train",
        "--quiet",
        "--out",
        str(out),
        "--set",
        f"seed={seed}",
        "--set",
        f"learner.algorithm={algorithm}",
        *(a for o in overrides for a in ("--set", o)),
    ]
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = proc.communicate(timeout=timeout_s)
        rc, err = proc.returncode, stderr[-1500:]
    except subprocess.TimeoutExpired:
        # SIGTERM first: the run shuts down the Ray it started (a SIGKILL would orphan it)
        proc.terminate()
        try:
            proc.communicate(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        rc, err = None, f"timed out after {timeout_s}s"
    wall = time.perf_counter() - t0
    res = {"seed": seed, **read_run(out), "wall_s": round(wall, 1), "rc": rc}
    res["loadavg_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    if rc != 0:
        res["error"] = err
    return res


def read_run(out: Path) -> dict:
    """Reached?, steps to target, seconds, the lowest reader and how the run ended."""
    path = out / "metrics.jsonl"
    if not path.exists():
        return {"reached": False}
    records = read_records(path)  # a run killed mid-write leaves a torn last line: skipped
    evals = [r for r in records if r.get("event") == "eval" and "checkpoint" not in r]
    final = next((r for r in records if r.get("event") == "eval" and "checkpoint" in r), None)
    steps = [r for r in records if "event" not in r]
    cfg = json.loads((out / "config.json").read_text()) if (out / "config.json").exists() else {}
    target = cfg.get("eval", {}).get("target", 0.85)
    hit = next((e for e in evals if e["step"] > 0 and min(e["by_key"].values()) >= target), None)
    last = (final or (evals[-1] if evals else {})).get("by_key", {})
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    lowest = min(last, key=last.get) if last else None
    tail = steps[-TAIL_STEPS:]
    return {
        "reached": hit is not None,
        "steps": hit["step"] if hit else len(steps),
        "steps_done": len(steps),
        "train_s": summary.get("train_seconds"),
        "setup_s": summary.get("setup", {}).get("total_s"),
        "lowest_reader": lowest,
        "lowest_rate": round(last[lowest], 3) if lowest else None,
        "final_rates": {k: round(v, 3) for k, v in last.items()},
        "end": {  # how the run ended: the last TAIL_STEPS steps
            "entropy": _mean(r.get("entropy") for r in tail),
            "entropy_first": _mean(r.get("entropy_first") for r in tail),  # the topic token's
            "reward_mean": _mean(r.get("reward_mean") for r in tail),
            "lowest_reward": _mean(r.get("reward_by_key", {}).get(lowest) for r in tail),
            "advantage_abs_mean": _mean(r.get("advantage_abs_mean") for r in tail),
            "completion_len": _mean(r.get("completion_len") for r in tail),
        },
        "curve": [[e["step"], {k: round(v, 2) for k, v in e["by_key"].items()}] for e in evals],
    }


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return round(sum(vals) / len(vals), 3) if vals else None


def summarize(runs: list[dict]) -> dict:
    reached = [r for r in runs if r["reached"]]
    started = [r for r in runs if r["reached"] is not None]
    return {
        "reached": f"{len(reached)}/{len(started)}",
        "failed_seeds": [r["seed"] for r in started if not r["reached"]],
        "never_started_seeds": [r["seed"] for r in runs if r["reached"] is None],
        "steps_to_target": common.spread(r["steps"] for r in reached),
        "train_s": common.spread(r["train_s"] for r in reached if r.get("train_s")),
        "lowest_final_rate": common.spread(
            r["lowest_rate"] for r in started if r.get("lowest_rate") is not None
        ),
        "loadavg_1m": common.spread(r["loadavg_1m"][0] for r in runs),
    }


def main(argv: list[str]) -> dict:
    p = common.parser("seeds", __doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=20, help="how many seeds, from --first-seed")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--algorithm", default="grpo", help="one or a comma list (config.ALGORITHMS)")
    p.add_argument("--keep", default="", help="keep each run directory under DIR (else removed)")
    p.add_argument("--timeout-s", type=float, default=900.0, help="per run")
    p.add_argument("--retries", type=int, default=2, help="for a run that never starts")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args(argv)
    from rewardloop.config import ALGORITHMS, load_config

    cfg = load_config(None, args.overrides)  # a bad override fails here, before any run
    algorithms = [a.strip() for a in args.algorithm.split(",") if a.strip()]
    for a in algorithms:
        if a not in ALGORITHMS:
            raise SystemExit(f"--algorithm: one of {', '.join(ALGORITHMS)}, got {a!r}")
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-seeds-"))
    results: dict[str, dict] = {}
    try:
        for algorithm in algorithms:
            runs = []
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                out = root / f"{algorithm}-s{seed}"
                runs.append(
                    run_seed(seed, algorithm, args.overrides, out, args.timeout_s, args.retries)
                )
                r = runs[-1]
                common.log(
                    f"seeds: {algorithm} seed {seed} reached={r['reached']} steps={r.get('steps')}"
                    f" lowest={r.get('lowest_reader')}:{r.get('lowest_rate')}"
                    f" train_s={r.get('train_s')} load={r['loadavg_1m']}"
                )
                if not args.keep:
                    shutil.rmtree(out, ignore_errors=True)
            results[algorithm] = {"summary": summarize(runs), "runs": runs}
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    all_reached = all(r["reached"] is True for a in results.values() for r in a["runs"])
    out = common.result(
        "seeds",
        argv,
        [],
        goal={"every_seed_reaches_target": all_reached, "target": cfg.eval.target},
        settings={
            "seeds": [args.first_seed, args.first_seed + args.seeds - 1],
            "max_steps": cfg.learner.max_steps,
            "overrides": args.overrides,
        },
        algorithms=results,
    )
    out["goals_met"] = all_reached
    return out
