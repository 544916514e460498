"""The `rewardloop` command: the top floor, the only part of rewardloop/ that calls cluster/.

rewardloop train [--config FILE] [--set key=value ...] [--out DIR] [--max-steps N] [--address A]
rewardloop train --resume RUN_DIR [--set key=value ...] [--max-steps N]
rewardloop eval --model DIR [--config FILE] [--set ...]
rewardloop feedback serve|forget ...
rewardloop bench NAME [--json]
rewardloop worker (--run-dir DIR | --learner HOST:PORT --weights HOST:PORT) [--config FILE] ...
rewardloop status RUN_DIR [--timeout S]
rewardloop chaos [--config FILE] [--set ...] --kill-workers N --kill-learner M [--max-steps S]
                 [--duration-s D] [--out DIR] [--seed S]
rewardloop serve [--config FILE] [--set ...] [--out DIR];  versions | rollback | pin | forget RUN_DIR ...
rewardloop scale RUN_DIR [--workers N] [--wait S]; rewardloop stop RUN_DIR
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from rewardloop.config import RunConfig, load_config, replace
from rewardloop.errors import ConfigError, RewardLoopError


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config file (see README: Config reference)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set learner.lr=1e-3 (repeatable)",
    )


def _load(args: argparse.Namespace) -> RunConfig:
    overrides = list(args.overrides)
    if getattr(args, "out", None):
        overrides.append(f"out={args.out}")
    if getattr(args, "max_steps", None):
        overrides.append(f"learner.max_steps={args.max_steps}")
    if getattr(args, "address", None):
        overrides.append(f"cluster.address={args.address}")
    return load_config(args.config, overrides)


def cmd_train(args: argparse.Namespace) -> int:
    from rewardloop.cluster import resume
    from rewardloop.cluster.run import train

    if args.resume:
        resume.resume_args(args)  # the run's config.json and directory (overrides still apply)
    cfg = _load(args)
    summary = train(cfg, progress=not args.quiet, resume=bool(args.resume))
    print(f"\nrun directory: {cfg.out}")
    print(
        f"steps {summary['steps']}  seconds {summary['seconds']}  trajectories {summary['trajectories']}"
        f"  ({summary['trajectories_per_s']}/s)  mean lag {summary['policy_lag_mean']:.2f}"
    )
    for line in summary_lines(summary["eval"]):
        print(line)
    return 0


def summary_lines(section: dict, indent: str = "") -> list[str]:
    """The eval section as printed: the metric start -> end, then per key; the audience after."""
    calls = section.get("reward_calls")
    extra = f"  ({calls['calls']} reward calls, {calls['errors']} failed)" if calls else ""
    lines = [
        f"{indent}{section['metric']}: {_fmt(section['start'])} -> {_fmt(section['end'])}{extra}"
    ]
    for key, v in section["by_key"].items():
        lines.append(f"{indent}  {key or 'all':>12}: {_fmt(v['start'])} -> {_fmt(v['end'])}")
    if "audience" in section:
        lines += summary_lines(section["audience"], indent + "audience ")
    return lines


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def cmd_eval(args: argparse.Namespace) -> int:
    from rewardloop.feedback.evaluation import Evaluator

    cfg = _load(args)
    cfg = replace(cfg, model={"name_or_path": args.model})
    evaluator = Evaluator(cfg)
    try:
        result = evaluator()
    finally:
        evaluator.close()
    result["model"] = args.model
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def cmd_feedback(args: argparse.Namespace) -> int:
    """`feedback serve | forget` (options: feedback/gateway/main.py); 0 on success."""
    from rewardloop.feedback.gateway import main as feedback_main

    return feedback_main.command(_load(args), args)


def cmd_model_build(args: argparse.Namespace) -> int:
    """Build (or find cached) the task's default model; prints its directory. For images and
    clusters that should not pay the one-time build inside the first run."""
    from rewardloop.modeling import default_model_dir

    cfg = _load(args)
    if cfg.model.name_or_path != "default":
        print(
            f"config error: model.name_or_path is {cfg.model.name_or_path!r}; only the built-in "
            "`default` model is built (use --set model.name_or_path=default)",
            file=sys.stderr,
        )
        return 2
    print(default_model_dir(cfg))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from rewardloop.bench import runner

    return runner.main([args.name, *(["--json"] if args.json else []), *args.rest])


def cmd_serve(args: argparse.Namespace) -> int:
    """`rewardloop serve`: live traffic in, versions out (cluster/serve_command.py)."""
    from rewardloop.cluster.serve_command import serve

    serve(_load(args), progress=not args.quiet)
    return 0


def cmd_chaos(args: argparse.Namespace) -> int:
    """Train under SIGKILLs of workers and the learner (cluster/chaos.py); prints JSON."""
    from rewardloop.cluster import chaos

    return chaos.command(_load(args), args)


def cmd_status(args: argparse.Namespace) -> int:
    """A running run's live figures as a table (rewardloop/run_status.py); 1 if not running."""
    from rewardloop import run_status

    return run_status.command(args.run_dir, args.timeout)


def cmd_worker(args: argparse.Namespace) -> int:
    """A rollout worker as a plain process (actors/external.py); prints its counters as JSON.

    0 when it stopped on a signal, a limit, or after the learner it reached went away."""
    import signal
    import socket
    import threading

    import torch

    from rewardloop.actors import external
    from rewardloop.auth import resolve_token
    from rewardloop.feedback.sources.for_task import train_reward_source
    from rewardloop.modeling import load_policy
    from rewardloop.tasks import get_task

    if bool(args.learner) == bool(args.run_dir) or bool(args.learner) != bool(args.weights):
        raise ConfigError("worker: give --run-dir DIR, or --learner HOST:PORT --weights HOST:PORT")
    cfg = _load(args)
    torch.set_num_threads(cfg.rollout.torch_threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    worker_id = args.worker_id or f"external-{socket.gethostname()}-{os.getpid()}"
    seed = os.getpid() if args.seed is None else args.seed
    stop = threading.Event()
    if args.run_dir:
        endpoints = external.run_dir_endpoints(args.run_dir, stop)
    else:
        endpoints = external.fixed_endpoints(args.learner, args.weights)
    model, tokenizer, _ = load_policy(cfg, cfg.task)
    worker = external.ExternalWorker(
        worker_id,
        cfg,
        model,
        tokenizer,
        get_task(cfg.task).prompts(cfg),
        train_reward_source(cfg, seed),  # its own reward source, from its own config
        endpoints,
        token=resolve_token(cfg.learner.token, "learner.token"),
        ca_cert=cfg.rollout.ca_cert,
        reconnect_s=args.reconnect_s,
        wait_s=args.wait_s,
        seed=seed,
    )

    def on_signal(signum, frame) -> None:  # first: finish the generation; second: now
        if stop.is_set():
            worker.abort()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    counters = worker.run(stop, args.max_generations, args.duration_s)
    print(json.dumps(counters, sort_keys=True), flush=True)
    return 0 if counters["connected"] or stop.is_set() else 1


def _worker_arguments(worker: argparse.ArgumentParser) -> None:
    _config_args(worker)
    worker.add_argument("--run-dir", help="a run's directory: its endpoints.json names the learner")
    worker.add_argument("--learner", help="the learner's TrajectoryService (ingest) HOST:PORT")
    worker.add_argument("--weights", help="the learner's WeightService HOST:PORT")
    worker.add_argument("--worker-id", help="unique id (default external-<hostname>-<pid>)")
    worker.add_argument("--seed", type=int, help="sampling seed (default: the process id)")
    worker.add_argument("--max-generations", type=int, help="stop after N generations")
    worker.add_argument("--duration-s", type=float, help="stop after this many seconds")
    worker.add_argument(
        "--reconnect-s",
        type=float,
        default=30.0,
        help="keep reconnecting to a lost learner this long before giving up (default 30)",
    )
    worker.add_argument(
        "--wait-s",
        type=float,
        default=600.0,
        help="--run-dir: wait this long for the run's learner to come up (default 600)",
    )
    worker.set_defaults(func=cmd_worker)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rewardloop", description="Learn from feedback.")
    sub = parser.add_subparsers(dest="command")
    train = sub.add_parser("train", help="run the learning loop (default: the news-feed example)")
    _config_args(train)
    train.add_argument("--out", help="run directory (default runs/latest)")
    train.add_argument("--max-steps", type=int, help="optimizer steps")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument(
        "--resume", metavar="RUN_DIR", help="continue a stopped or killed run from its resume/"
    )
    train.add_argument(
        "--address",
        help="Ray cluster to attach to, e.g. HOST:6379 (also RAY_ADDRESS or cluster.address; "
        "default: start a local Ray)",
    )
    train.set_defaults(func=cmd_train)
    ev = sub.add_parser("eval", help="score a checkpoint on the held-out prompts; prints JSON")
    ev.add_argument(
        "--model", required=True, help="a Hugging Face model directory (e.g. a run's checkpoint/)"
    )
    _config_args(ev)
    ev.set_defaults(func=cmd_eval)
    from rewardloop.feedback.gateway.main import add_arguments as feedback_arguments

    fb = sub.add_parser("feedback", help="the feedback gateway")
    fb_config = argparse.ArgumentParser(add_help=False)
    _config_args(fb_config)
    feedback_arguments(fb.add_subparsers(dest="feedback_cmd", required=True), (fb_config,))
    fb.set_defaults(func=cmd_feedback)
    model = sub.add_parser("model", help="the built-in default model")
    model_sub = model.add_subparsers(dest="model_cmd", required=True)
    build = model_sub.add_parser(
        "build", help="build the task's default model into model.cache_dir; prints its path"
    )
    _config_args(build)
    build.set_defaults(func=cmd_model_build)
    bench = sub.add_parser("bench", help="benchmarks (see bench/README.md)")
    bench.add_argument("name")
    bench.add_argument("--json", action="store_true")
    bench.add_argument("rest", nargs=argparse.REMAINDER)
    bench.set_defaults(func=cmd_bench)
    _worker_arguments(
        sub.add_parser("worker", help="a rollout worker outside the cluster, as a plain process")
    )
    from rewardloop.cluster.chaos import add_arguments as chaos_arguments

    chaos = sub.add_parser("chaos", help="train while killing workers and the learner")
    chaos_arguments(chaos, _config_args)
    chaos.set_defaults(func=cmd_chaos)
    status = sub.add_parser("status", help="a running run's live metrics as a table")
    status.add_argument("run_dir", help="the run directory (its endpoints.json names /metrics)")
    status.add_argument("--timeout", type=float, default=5.0, help="seconds per scrape")
    status.set_defaults(func=cmd_status)
    serve = sub.add_parser("serve", help="an OpenAI-compatible API that learns from feedback")
    _config_args(serve)
    serve.add_argument("--out", help="run directory (default runs/latest)")
    serve.add_argument("--quiet", action="store_true", help="no progress lines")
    serve.set_defaults(func=cmd_serve)
    from rewardloop.serving.commands import add_arguments as serve_commands

    serve_commands(sub)  # versions, rollback, pin, forget
    from rewardloop.scale_command import add_parser as scale_arguments

    scale_arguments(sub)  # rewardloop scale RUN_DIR --workers N, rewardloop stop RUN_DIR
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        argv = ["train"]
    args = build_parser().parse_args(argv)
    if not getattr(args, "func", None):
        build_parser().print_help()
        return 2
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except RewardLoopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
