"""`rewardloop bench scaling`: rollout throughput and learner waiting with 1, 2, 3 workers.

Two Ray nodes on this machine (bench/ray_nodes.py): a head that holds the learner
(`learner_node`) and a second node for the rollout workers (`rollout_node`). One
`rewardloop train --address` run trains throughout; `rewardloop scale` (rewardloop/
scale_command.py) takes it through the phases, by default 1, 2, 3, 3, 2, 1 workers (each count
twice, in mirrored order, so a drift of the machine's load falls on both sides), and
`rewardloop stop` ends it. Each phase skips `--settle-steps` steps after the pool is up, then
measures `--steps` steps from metrics.jsonl: trajectories trained per second and the learner's
wait fraction (seconds waiting for data / seconds elapsed). The comparisons are N workers
against 1 (medians over the phases of each count); on a machine with fewer cores than
workers + learner, more workers share the same CPUs and the ratio says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rewardloop import scale_command
from rewardloop.bench import common
from rewardloop.bench.ray_nodes import RayNodes

PHASE_DEADLINE_S = 600.0


def _steps(out: Path) -> list[dict]:
    path = out / "metrics.jsonl"
    if not path.exists():
        return []
    lines = [ln for ln in path.read_text().splitlines() if ln.endswith("}")]
    return [r for r in map(json.loads, lines) if "event" not in r]


def _wait_steps(out: Path, n: int, proc: subprocess.Popen) -> list[dict]:
    deadline = time.monotonic() + PHASE_DEADLINE_S
    while len(steps := _steps(out)) < n:
        if proc.poll() is not None:
            raise RuntimeError(f"the run exited ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {n} steps within {PHASE_DEADLINE_S:.0f}s")
        time.sleep(0.25)  # the run appends to metrics.jsonl; look again
    return steps


def measure(window: list[dict], before: dict) -> dict:
    """traj/s and wait fraction over `window` (step records), starting after `before`."""
    elapsed = window[-1]["time_s"] - before["time_s"]
    trained = window[-1]["trajectories"] - before["trajectories"]
    return {
        "trajectories_per_s": trained / elapsed,
        "wait_fraction": sum(s["wait_s"] for s in window) / elapsed,
        "workers_seen": sorted({s.get("workers") for s in window}),
    }


def main(argv: list[str]) -> dict:
    p = common.parser("scaling", __doc__.splitlines()[0])
    p.add_argument("--phases", default="1,2,3,3,2,1", help="worker counts, in order")
    p.add_argument("--steps", type=int, default=10, help="steps measured per phase")
    p.add_argument("--settle-steps", type=int, default=3, help="steps skipped after each change")
    p.add_argument("--rollout-cpus", type=int, default=3, help="CPUs of the rollout node")
    p.add_argument("--model-cache", default="", help="model.cache_dir (default: the config's)")
    args = p.parse_args(argv)
    phases = [int(x) for x in args.phases.split(",")]
    out = Path(tempfile.mkdtemp(prefix="rl-bench-scaling-"))
    env = {"RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    sets = [
        "learner.max_steps=100000",  # ended by `rewardloop stop`
        "learner.max_staleness=2",
        "eval.every_steps=0",
        "eval.samples_per_prompt=2",
        "eval.target=0",
        f"rollout.num_workers={phases[0]}",
        "cluster.learner_resources={CPU: 1, learner_node: 1}",
        "cluster.rollout_resources={CPU: 1, rollout_node: 1}",
        "cluster.placement_strategy=SPREAD",
    ]
    if args.model_cache:
        sets.append(f"model.cache_dir={args.model_cache}")
    results = []
    with RayNodes(env) as nodes:
        address = nodes.head(num_cpus=1, resources={"learner_node": 1})
        nodes.worker(num_cpus=args.rollout_cpus, resources={"rollout_node": args.rollout_cpus})
        cmd = [sys.executable, "-m", "rewardloop.cli", "train", "--quiet", "--out", str(out)]
        cmd += ["--address", address]
        for item in sets:
            cmd += ["--set", item]
        proc = subprocess.Popen(
            cmd,
            env={**os.environ, **nodes.env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _wait_steps(out, 1, proc)
            for workers in phases:
                common.log(f"== {workers} worker(s)")
                scale_command.scale(out, workers, wait_s=PHASE_DEADLINE_S)
                start = len(_steps(out)) + args.settle_steps
                steps = _wait_steps(out, start + args.steps, proc)
                figures = measure(steps[start : start + args.steps], steps[start - 1])
                results.append({"workers": workers, **figures})
                common.log(json.dumps(results[-1]))
            scale_command.stop(out)
            proc.communicate(timeout=PHASE_DEADLINE_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=60)
    by_count = {
        n: [r for r in results if r["workers"] == n]
        for n in sorted({r["workers"] for r in results})
    }
    per_count = {
        str(n): {
            "trajectories_per_s": common.spread(r["trajectories_per_s"] for r in rs),
            "wait_fraction": common.spread(r["wait_fraction"] for r in rs),
        }
        for n, rs in by_count.items()
    }
    rate = {n: common.median(r["trajectories_per_s"] for r in rs) for n, rs in by_count.items()}
    base = min(rate)
    comparisons = [
        common.comparison(
            f"trajectories/s, {n} workers vs {base} (two loopback nodes)",
            (f"{n} workers", rate[n], "traj/s"),
            (f"{base} worker(s)", rate[base], "traj/s"),
        )
        for n in sorted(rate)
        if n != base
    ]
    return common.result(
        "scaling",
        argv,
        comparisons,
        phases=results,
        per_worker_count=per_count,
        run_dir=str(out),
    )


if __name__ == "__main__":
    common.emit(main(sys.argv[1:]), "--json" in sys.argv)
