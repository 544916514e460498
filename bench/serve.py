"""`rewardloop bench serve`: what the live-traffic front costs over plain generation.

Both sides run in this one process on the same model, the same prompts and the same
micro-batching `Engine`, with `--concurrency` client threads each sending requests one after
another:

    plain  engine.generate(version 0, prompt ids, n=1, max_tokens)          (no HTTP, no log)
    serve  the `openai` client -> POST /v1/completions -> route, generate,
           content check, durable SQLite log (synchronous=FULL) -> JSON

Rounds alternate plain, serve, plain, serve (ABAB) so machine load drifts hit both; each figure
is the median over rounds with its spread. Requests/s (higher is better) and p50 / p99 latency
(seconds, lower is better) are compared as serve / plain.
"""

from __future__ import annotations

import random
import tempfile
import threading
import time

import torch

from rewardloop.config import load_config
from rewardloop.modeling import load_policy
from rewardloop.serving import stack
from rewardloop.tasks.newsfeed.prompts import train_prompts

from . import common


def _percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def _round(call, prompts: list[str], concurrency: int, per_thread: int) -> dict:
    latencies: list[float] = []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(per_thread):
            prompt = rng.choice(prompts)
            t0 = time.perf_counter()
            call(prompt)
            with lock:
                latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    seconds = time.perf_counter() - t0
    return {"rps": len(latencies) / seconds, "p50": _percentile(latencies, 0.5),
            "p99": _percentile(latencies, 0.99)}  # fmt: skip


def main(argv: list[str]) -> dict:
    p = common.parser("serve", __doc__)
    p.add_argument("--concurrency", type=int, default=4, help="client threads")
    p.add_argument("--requests", type=int, default=200, help="requests per round")
    p.add_argument("--max-tokens", type=int, default=16)
    args = p.parse_args(argv)
    import openai

    torch.set_num_threads(1)
    out = tempfile.mkdtemp(prefix="bench-serve-")
    cfg = load_config(None, ["serve.port=0", f"out={out}", f"serve.max_tokens={args.max_tokens}",
                             f"serve.max_queue={max(64, args.concurrency * 2)}"])  # fmt: skip
    model, tokenizer, _ = load_policy(cfg)
    st = stack.build(cfg, model, tokenizer, out, start_loop=False)
    prompts = [q.text for q in train_prompts()]
    ids = {q: tokenizer(q, add_special_tokens=False)["input_ids"] for q in prompts}
    client = openai.OpenAI(
        base_url=f"{st.server.url}/v1", api_key="none", timeout=60, max_retries=0
    )

    def plain(prompt: str) -> None:
        st.engine.generate(0, ids[prompt], 1, args.max_tokens, 1.0, 60.0)

    def served(prompt: str) -> None:
        client.completions.create(model="rewardloop", prompt=prompt, max_tokens=args.max_tokens,
                                  user="bench")  # fmt: skip

    per_thread = max(1, args.requests // args.concurrency)
    rounds: dict[str, list[dict]] = {"plain": [], "serve": []}
    try:
        _round(served, prompts, args.concurrency, 2)  # warm-up: connections, first log writes
        for i in range(args.repeats):
            common.log(f"round {i + 1}/{args.repeats}")
            rounds["plain"].append(_round(plain, prompts, args.concurrency, per_thread))
            rounds["serve"].append(_round(served, prompts, args.concurrency, per_thread))
    finally:
        st.stop()

    def med(side: str, key: str) -> float:
        return common.median(r[key] for r in rounds[side])

    comparisons = [
        common.comparison("requests per second", ("serve API", med("serve", "rps"), "req/s"),
                          ("plain generate", med("plain", "rps"), "req/s")),
        common.comparison("p50 latency", ("serve API", med("serve", "p50"), "s"),
                          ("plain generate", med("plain", "p50"), "s")),
        common.comparison("p99 latency", ("serve API", med("serve", "p99"), "s"),
                          ("plain generate", med("plain", "p99"), "s")),
    ]  # fmt: skip
    return common.result(
        "serve",
        argv,
        comparisons,
        concurrency=args.concurrency,
        requests_per_round=per_thread * args.concurrency,
        spread={
            side: {k: common.spread(r[k] for r in rs) for k in ("rps", "p50", "p99")}
            for side, rs in rounds.items()
        },  # fmt: skip
    )
