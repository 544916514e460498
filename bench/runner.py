"""`rewardloop bench NAME [--json] [options]`: run one benchmark (or all) and print its JSON.

Each benchmark module has `main(argv) -> dict`; this runner prints the dict as one JSON object
(with --json nothing else goes to stdout: progress is on stderr). `all` runs every benchmark in
one process, one after the other, and prints one object holding each result.
"""

from __future__ import annotations

import importlib
import os
import sys
import time

from rewardloop.bench import common

BENCHMARKS = ("ingest", "weights", "rollout", "learner", "e2e", "memory")
# many runs / two Ray nodes / a live API / a diagnostic: not in `all`
ON_DEMAND = ("seeds", "scaling", "serve", "learner_state", "pinned")


def run(name: str, argv: list[str]) -> dict:
    module = importlib.import_module(f"rewardloop.bench.{name}")
    return module.main(argv)


def main(argv: list[str]) -> int:
    """Entry point of `rewardloop bench`; returns the exit status."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not argv or argv[0] in ("-h", "--help"):
        print(
            f"usage: rewardloop bench {{{','.join(BENCHMARKS + ON_DEMAND)},all}} [--json] [options]\n"
            "       rewardloop bench NAME --help   for a benchmark's options",
            file=sys.stderr,
        )
        return 2
    name, rest = argv[0], list(argv[1:])
    as_json = "--json" in rest
    if name not in (*BENCHMARKS, *ON_DEMAND, "all"):
        print(
            f"bench: unknown benchmark {name!r}; use one of {', '.join(BENCHMARKS + ON_DEMAND)}, all",
            file=sys.stderr,
        )
        return 2
    if name != "all":
        common.emit(run(name, rest), as_json)
        return 0
    results, t0 = {}, time.perf_counter()
    for bench in BENCHMARKS:
        common.log(f"== bench {bench}")
        try:
            results[bench] = run(bench, ["--json"] if as_json else [])
        except Exception as exc:  # one failing benchmark must not hide the others' figures
            results[bench] = {"benchmark": bench, "error": f"{type(exc).__name__}: {exc}"}
    common.emit(
        {
            "benchmark": "all",
            "seconds": round(time.perf_counter() - t0, 1),
            "machine": common.machine_info(),
            "results": results,
        },
        as_json,
    )
    return 0 if all("error" not in r for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
