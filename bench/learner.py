"""`bench learner`: how long the learner waits for data, and where each step's time goes.

Runs the real loop with 1..N rollout workers and reads the learner's per-step metrics after a
warm-up (the first `--skip` steps: worker start-up, first weights). Two deployments:

- service: `LearnerService` in this process (ingest server, trainer, gRPC WeightService) and
  N spawned processes running `RolloutWorker` with a `TrajectoryClient` and a `WeightClient`
  (the external-worker setup). The ingest server's batch handling is wrapped with a timer, so
  each step also shows the learner CPU time spent admitting trajectories (it runs on gRPC
  threads, concurrently with training, and competes with it for the GIL).
- ray: `cluster.run.train(cfg)` (Ray actors, object-store weights), the `rewardloop train`
  path, in a spawned process; its metrics.jsonl gives the same per-step split without ingest.

Steady-state wait fraction = sum(wait_s) / wall time over the steps after the warm-up.

    rewardloop bench learner --json [--steps 40] [--max-workers 3 | --workers 3,6,9]
                                    [--modes service,ray] [--set learner.max_staleness=2]

With max_staleness s, at most groups_per_step x max(1, s) groups are in flight at once (the
staleness budget, learner/credits.py), so more workers than that cannot cut the wait.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import torch

from rewardloop.bench import common

GOAL_WAIT_MAX = 0.10
SPLIT_KEYS = ("wait_s", "ingest_s", "forward_backward_s", "optimizer_s", "publish_s", "step_s")


def worker_run(worker_id: str, seed: int, endpoints: dict, stop_file: str, overrides: list) -> dict:
    """A rollout worker process outside Ray: gRPC trajectories out, gRPC weights in."""
    from rewardloop.actors.rollout import RolloutWorker
    from rewardloop.actors.trajectory_client import TrajectoryClient
    from rewardloop.actors.weight_client import WeightClient
    from rewardloop.config import load_config
    from rewardloop.feedback.sources.for_task import train_reward_source
    from rewardloop.modeling import load_policy
    from rewardloop.tasks import get_task

    cfg = load_config(None, overrides)
    torch.set_num_threads(cfg.rollout.torch_threads)
    model, tok, _ = load_policy(cfg)
    timeout = cfg.rollout.rpc_timeout_s
    client = TrajectoryClient(
        endpoints["ingest"], worker_id, timeout_s=timeout, batch_size=cfg.rollout.send_batch_size
    )
    weights = WeightClient(endpoints["weights"], timeout_s=timeout)
    worker = RolloutWorker(
        worker_id,
        cfg,
        model,
        tok,
        get_task(cfg.task).prompts(cfg),
        train_reward_source(cfg, seed),
        client,
        weights=weights.poll,
        seed=seed,
        wait_weights=weights.wait_for_version,  # the long-poll
    )
    stop = threading.Event()

    def watch() -> None:
        while not os.path.exists(stop_file):
            time.sleep(0.05)
        stop.set()
        client.abort()  # a wait for credits returns now

    threading.Thread(target=watch, daemon=True).start()
    try:
        return worker.run(stop)
    finally:
        client.close()
        weights.close()


def run_service(k: int, steps: int, overrides: list, workers: common.Workers) -> dict:
    """LearnerService here, k worker processes; returns per-step metrics with ingest_s."""
    from rewardloop.config import load_config
    from rewardloop.learner.service import LearnerService
    from rewardloop.modeling import load_policy

    overrides = ["rollout.weight_sync=grpc", f"rollout.num_workers={k}", *overrides]
    cfg = load_config(None, overrides)
    torch.set_num_threads(cfg.learner.torch_threads)
    model, tok, _ = load_policy(cfg)
    service = LearnerService(cfg, model, tok, publish=None, device="cpu")
    ingest_s = [0.0]
    lock = threading.Lock()
    handle = service.ingest._handle_batch  # instrumentation only: time each batch's admission

    def timed_handle(st, batch):
        t0 = time.perf_counter()
        try:
            return handle(st, batch)
        finally:
            with lock:
                ingest_s[0] += time.perf_counter() - t0

    service.ingest._handle_batch = timed_handle
    service.start()
    endpoints = {"ingest": service.ingest.address, "weights": service.weight_address}
    stop_file = Path(tempfile.mkdtemp(prefix="bench-learner-")) / "stop"
    for i in range(k):
        workers.submit(i, worker_run, f"w{i}", 1000 + i, endpoints, str(stop_file), overrides)
    snapshots: list[float] = []

    def snapshot() -> None:  # ingest time at each step boundary
        while not service.done.is_set():
            while len(snapshots) < len(service.metrics):
                with lock:
                    snapshots.append(ingest_s[0])
            time.sleep(0.002)

    watcher = threading.Thread(target=snapshot, daemon=True)
    service.start_training(steps)
    watcher.start()
    service.done.wait(timeout=60 + steps * 30)
    stop_file.touch()
    worker_stats = [workers.result(i) for i in range(k)]
    status = service.status()  # buffer and credit ledger as the loop ended (says why it starved)
    service.stop()
    watcher.join(timeout=5)
    shutil.rmtree(stop_file.parent, ignore_errors=True)
    metrics = [dict(m) for m in service.metrics]
    snapshots += [ingest_s[0]] * (len(metrics) - len(snapshots))  # steps after the last poll
    prev = 0.0
    for m, snap in zip(metrics, snapshots, strict=False):
        m["ingest_s"], prev = snap - prev, snap
    return {
        "metrics": metrics,
        "error": service.error,
        "workers": worker_stats,
        "status": status if service.error else {},
    }


def ray_train(k: int, steps: int, overrides: list) -> dict:
    """`train(cfg)` with k workers and no evaluation between start and end (spawned process)."""
    from rewardloop.cluster.run import train
    from rewardloop.config import load_config

    out = tempfile.mkdtemp(prefix="bench-learner-ray-")
    cfg = load_config(
        None,
        [
            f"rollout.num_workers={k}",
            f"learner.max_steps={steps}",
            "eval.every_steps=0",
            f"out={out}",
            *overrides,
        ],
    )
    error, summary = "", {}
    try:
        summary = train(cfg, progress=False)
    except Exception as exc:  # keep the steps it made; say why it stopped
        error = f"{type(exc).__name__}: {exc}"
    # train() has shut down the Ray it started, whether it finished or failed
    path = Path(out) / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    metrics = [r for r in map(json.loads, lines) if "event" not in r]
    shutil.rmtree(out, ignore_errors=True)
    return {"metrics": metrics, "error": error, "workers": summary.get("rollout_workers", [])}


def steady(metrics: list[dict], skip: int) -> dict:
    """Wait fraction and the median split of the steps after the first `skip` (>= 1)."""
    skip = max(1, skip)
    if len(metrics) < skip + 2:
        return {"steps": len(metrics), "error": f"only {len(metrics)} steps, need >= {skip + 2}"}
    base, window = metrics[skip - 1], metrics[skip:]
    prev = base["time_s"]
    for m in window:
        m["step_s"], prev = m["time_s"] - prev, m["time_s"]
    wall = window[-1]["time_s"] - base["time_s"]
    wait = sum(m["wait_s"] for m in window)
    split = {
        key: round(common.median(m[key] for m in window), 5)
        for key in SPLIT_KEYS
        if all(key in m for m in window)
    }
    return {
        "steps_measured": len(window),
        "wall_s": round(wall, 3),
        "wait_s": round(wait, 3),
        "wait_fraction": round(wait / wall, 4) if wall > 0 else None,
        "median_split_s": split,
        "lag_mean": round(sum(m["lag_mean"] for m in window) / len(window), 3),
        # trajectories the loop made for nothing: too stale to train on (whole run)
        "dropped_stale": window[-1].get("dropped_stale", 0),
        "rejected": _count(window[-1].get("rejected", 0)),
        "trajectories_per_s": round((window[-1]["trajectories"] - base["trajectories"]) / wall, 1),
    }


def _count(rejected: int | dict) -> int:
    """The buffer reports rejections by reason; their total."""
    return sum(rejected.values()) if isinstance(rejected, dict) else int(rejected)


def main(argv: list[str]) -> dict:
    p = common.parser("learner", __doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--skip", type=int, default=5, help="warm-up steps left out of the figures")
    p.add_argument("--max-workers", type=int, default=3)
    p.add_argument(
        "--workers", default="", help="worker counts to run, e.g. 3,6,9 (default 1..max-workers)"
    )
    p.add_argument("--modes", default="service,ray")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        help="config override for the loop, e.g. --set learner.max_staleness=2",
    )
    p.add_argument(
        "--stall-timeout-s",
        type=float,
        default=30.0,
        help="learner.wait_timeout_s for these runs: a stalled loop is reported after this long",
    )
    args = p.parse_args(argv)
    args.overrides = [f"learner.wait_timeout_s={args.stall_timeout_s}", *args.overrides]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    counts = sorted({int(k) for k in args.workers.split(",") if k.strip()}) or list(
        range(1, args.max_workers + 1)
    )
    results: dict = {m: {} for m in modes}
    comps = []
    for mode in modes:
        for k in counts:
            common.log(f"learner: {mode}, {k} worker(s), {args.steps} steps")
            with common.Workers(k if mode == "service" else 1, timeout_s=900) as workers:
                if mode == "service":
                    run = run_service(k, args.steps, args.overrides, workers)
                else:
                    run = workers.call(0, ray_train, k, args.steps, args.overrides)
            figures = steady(run["metrics"], args.skip)
            figures["error"] = run["error"] or figures.get("error", "")
            if run.get("status"):
                figures["status_at_error"] = run["status"]
            results[mode][str(k)] = figures
            goal = {"ratio_max": GOAL_WAIT_MAX} if k == counts[-1] else {}
            if figures.get("wait_fraction") is None:  # the loop failed: say so, goal not met
                nan = float("nan")
                comps.append(
                    common.comparison(
                        f"learner waiting, {mode}, {k} worker(s), steady state",
                        ("seconds waiting for data", nan, "s"),
                        ("wall seconds", nan, "s"),
                        note=f"the loop did not reach a steady state: {figures['error'][:300]}",
                        **goal,
                    )
                )
                continue
            comps.append(
                common.comparison(
                    f"learner waiting, {mode}, {k} worker(s), steady state",
                    ("seconds waiting for data", figures["wait_s"], "s"),
                    ("wall seconds", figures["wall_s"], "s"),
                    note="ratio = wait fraction; split (median s/step): "
                    + ", ".join(
                        f"{key} {v * 1e3:.1f} ms" for key, v in figures["median_split_s"].items()
                    )
                    + f"; dropped stale {figures['dropped_stale']}, rejected"
                    f" {figures['rejected']}, {figures['trajectories_per_s']} trajectories/s",
                    **goal,
                )
            )
    return common.result(
        "learner",
        argv,
        comps,
        settings={
            "steps": args.steps,
            "skip": args.skip,
            "workers": counts,
            "modes": modes,
            "overrides": args.overrides,
        },
        figures=results,
    )
