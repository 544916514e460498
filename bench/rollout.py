"""`bench rollout`: generated tokens/s of a rollout worker vs plain `model.generate`, same batch.

The batch is the workers' default: 3 prompts x a group of 8 completions, up to 24 new tokens,
temperature 1 (no top-k / top-p), one torch thread per process (rollout.torch_threads). Every
process loads the cached default model first, untimed. Three ways to generate:

- generate: plain Hugging Face `model.generate(do_sample=True)` on the 24 left-padded rows.
- sampler: `rewardloop.sampling.sample_completions` (the workers' KV-cache sampler) alone.
- worker: `RolloutWorker.generate()` + `flush()`: sampling, reward draws, Trajectory records
  and, with several workers, streaming them to a real IngestServer in this process.

Single process: generate vs sampler vs worker, interleaved. Then 1..3 worker processes at once
(each against k processes running plain generate at once), so contention is the same on both
sides; per-worker and aggregate tokens/s are reported.

    rewardloop bench rollout --json [--generations 40] [--max-workers 3]
"""

from __future__ import annotations

import threading
import time
import types

import torch

from rewardloop.bench import common

GOAL_RATIO_MIN = 0.8
_STATE: dict = {}  # per process: model, tokenizer, worker, rows


def _setup(seed: int, address: str = "", overrides: tuple = ()) -> dict:
    """Load the model and build the worker once per process (untimed)."""
    from rewardloop.actors.rollout import RolloutWorker
    from rewardloop.config import load_config
    from rewardloop.feedback.sources.for_task import train_reward_source
    from rewardloop.modeling import load_policy
    from rewardloop.sampling import left_pad
    from rewardloop.tasks import get_task

    torch.set_num_threads(1)
    cfg = load_config(None, list(overrides))
    if "model" not in _STATE:
        _STATE["model"], _STATE["tok"], _ = load_policy(cfg)
    model, tok = _STATE["model"], _STATE["tok"]
    sink: object = NullSink()
    if address:
        from rewardloop.actors.trajectory_client import TrajectoryClient

        sink = TrajectoryClient(
            address, f"bench-{seed}", timeout_s=60.0, batch_size=cfg.rollout.send_batch_size
        )
    prompts = get_task(cfg.task).prompts(cfg)
    worker = RolloutWorker(
        f"bench-{seed}",
        cfg,
        model,
        tok,
        prompts,
        train_reward_source(cfg, seed),
        sink,
        weights=None,
        seed=seed,
    )
    rc = cfg.rollout
    texts = [p.text for p in prompts.train[: rc.prompts_per_generation]]
    rows = [
        tok(t, add_special_tokens=False)["input_ids"] for t in texts for _ in range(rc.group_size)
    ]
    ids, mask = left_pad(rows, tok.pad_token_id)
    _STATE.update(
        worker=worker,
        rc=rc,
        ids=ids,
        mask=mask,
        prompt_ids=[tok(t, add_special_tokens=False)["input_ids"] for t in texts],
        gen=torch.Generator().manual_seed(seed),
    )
    torch.manual_seed(seed)
    return {"ok": True}


class NullSink:
    """Accepts every trajectory at once (no transport)."""

    def send(self, trajs):
        return types.SimpleNamespace(accepted=[t.id for t in trajs], duplicate=[], rejected=[])


def _generate_once() -> int:
    model, tok, rc = _STATE["model"], _STATE["tok"], _STATE["rc"]
    with torch.no_grad():
        out = model.generate(
            input_ids=_STATE["ids"],
            attention_mask=_STATE["mask"],
            do_sample=True,
            temperature=rc.temperature,
            top_k=0,
            top_p=1.0,
            max_new_tokens=rc.max_new_tokens,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
    new = out[:, _STATE["ids"].shape[1] :].tolist()
    eos = tok.eos_token_id
    return sum(row.index(eos) + 1 if eos in row else len(row) for row in new)


def _sampler_once() -> int:
    from rewardloop.sampling import sample_completions

    tok, rc = _STATE["tok"], _STATE["rc"]
    samples = sample_completions(
        _STATE["model"],
        _STATE["prompt_ids"],
        rc.group_size,
        rc.max_new_tokens,
        eos_id=tok.eos_token_id,
        pad_id=tok.pad_token_id,
        temperature=rc.temperature,
        generator=_STATE["gen"],
    )
    return sum(len(s.completion_ids) for s in samples)


def _worker_once() -> int:
    worker = _STATE["worker"]
    before = worker.counters["tokens"]
    worker.generate()
    worker.flush()
    return worker.counters["tokens"] - before


MODES = {"generate": _generate_once, "sampler": _sampler_once, "worker": _worker_once}


def run_mode(mode: str, generations: int) -> dict:
    """Time `generations` calls of one mode in this process (after one warm-up call)."""
    fn = MODES[mode]
    fn()
    start = time.monotonic()
    tokens = sum(fn() for _ in range(generations))
    end = time.monotonic()
    return {"tokens": tokens, "start": start, "end": end, "seconds": end - start}


def single_process(generations: int, repeats: int, overrides: tuple) -> dict:
    """All modes in this process, interleaved per repeat; tokens/s medians."""
    _setup(0, "", overrides)
    rates: dict[str, list[float]] = {m: [] for m in MODES}
    for r in range(repeats):
        common.log(f"rollout: single process, repeat {r + 1}/{repeats}")
        for mode in MODES:
            got = run_mode(mode, generations)
            rates[mode].append(got["tokens"] / got["seconds"])
    return {m: common.spread(v) for m, v in rates.items()}


def parallel(workers: common.Workers, k: int, generations: int, address: str) -> dict:
    """k processes generating at once: plain generate, then the rollout worker loop."""
    out = {}
    for mode in ("generate", "worker"):
        runs = workers.map(k, run_mode, [(mode, generations)] * k)
        span = max(r["end"] for r in runs) - min(r["start"] for r in runs)
        per = [r["tokens"] / r["seconds"] for r in runs]
        out[mode] = {
            "per_worker_tokens_per_s": round(common.median(per), 1),
            "aggregate_tokens_per_s": round(sum(r["tokens"] for r in runs) / span, 1),
        }
    return out


def main(argv: list[str]) -> dict:
    p = common.parser("rollout", __doc__.split("\n")[0])
    p.add_argument("--generations", type=int, default=40, help="timed generation calls per run")
    p.add_argument("--max-workers", type=int, default=3)
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        help="config override, e.g. --set model.cache_dir=/tmp/models",
    )
    args = p.parse_args(argv)
    overrides = tuple(args.overrides)
    torch.set_num_threads(1)
    single = single_process(args.generations, args.repeats, overrides)
    by_workers = parallel_all(args.max_workers, args.generations, args.repeats, overrides)
    gen, wrk, smp = (single[m]["median"] for m in ("generate", "worker", "sampler"))
    comps = [
        common.comparison(
            "rollout tokens/s, 1 worker: RolloutWorker vs plain generate (same batch, 1 thread)",
            ("RolloutWorker.generate + flush", wrk, "tokens/s"),
            ("model.generate", gen, "tokens/s"),
            ratio_min=GOAL_RATIO_MIN,
        ),
        common.comparison(
            "sampler alone vs plain generate",
            ("sample_completions", smp, "tokens/s"),
            ("model.generate", gen, "tokens/s"),
        ),
    ]
    for k, d in by_workers.items():
        comps.append(
            common.comparison(
                f"rollout tokens/s per worker, {k} worker process(es) at once",
                (
                    "RolloutWorker loop (gRPC to ingest)",
                    d["worker"]["per_worker_tokens_per_s"],
                    "tokens/s",
                ),
                (
                    f"{k} plain generate processes",
                    d["generate"]["per_worker_tokens_per_s"],
                    "tokens/s",
                ),
                ratio_min=GOAL_RATIO_MIN,
                note=f"aggregate {d['worker']['aggregate_tokens_per_s']:.0f} vs "
                f"{d['generate']['aggregate_tokens_per_s']:.0f} tokens/s",
            )
        )
    from rewardloop.config import load_config

    rc = load_config(None, list(overrides)).rollout
    return common.result(
        "rollout",
        argv,
        comps,
        settings={
            "prompts": rc.prompts_per_generation,
            "group_size": rc.group_size,
            "max_new_tokens": rc.max_new_tokens,
            "temperature": rc.temperature,
            "torch_threads": 1,
            "generations": args.generations,
            "repeats": args.repeats,
        },
        single_process_tokens_per_s=single,
        by_workers=by_workers,
    )


def parallel_all(max_workers: int, generations: int, repeats: int, overrides: tuple) -> dict:
    """1..max_workers worker processes streaming to a real IngestServer drained at once."""
    from rewardloop.learner.buffer import TrajectoryBuffer
    from rewardloop.learner.ingest_server import IngestServer

    buffer = TrajectoryBuffer(capacity=1024, max_staleness=1_000_000)
    server = IngestServer(buffer, version_fn=lambda: 0, capacity=1024)
    server.start()
    stop = threading.Event()

    def drain() -> None:
        while not stop.is_set():
            buffer.take_groups(1, 0, timeout_s=0.1)

    threading.Thread(target=drain, daemon=True, name="bench-drain").start()
    out: dict = {}
    try:
        with common.Workers(max_workers) as workers:
            workers.map(
                max_workers,
                _setup,
                [(i + 1, server.address, overrides) for i in range(max_workers)],
            )
            for k in range(1, max_workers + 1):
                common.log(f"rollout: {k} worker process(es)")
                runs = [parallel(workers, k, generations, server.address) for _ in range(repeats)]
                out[str(k)] = {
                    mode: {
                        key: round(common.median(r[mode][key] for r in runs), 1)
                        for key in runs[0][mode]
                    }
                    for mode in runs[0]
                }
    finally:
        stop.set()
        server.stop(grace_s=1.0)
    return out
