"""`bench pinned`: object-store memory the learner's published versions hold once fetched.

The learner's publishing pattern (cluster/object_store_bench.py: one `ray.put` per version, its
ref in a `WeightRegistry`) publishes `--versions` versions of a `--mb` MB float32 state, each
fetched by one actor as a rollout worker does. Then the object store's usage is read once Ray's
reference counting has released what nobody holds (it does so asynchronously: read until it
stops falling), for the registry's keep (cluster/actors.py RECENT_VERSIONS, the newest only)
against the 8 recent versions the learner kept before. Interleaved, `--repeats` of each.

    rewardloop bench pinned --json [--mb 100] [--versions 10] [--repeats 2]
"""

from __future__ import annotations

import functools
import time

from rewardloop.bench import common

OLD_KEEP = 8  # the learner's registry before this benchmark (cluster/actors.py)
SETTLE_S = 1.0  # usage unchanged this long: released
DEADLINE_S = 30.0


def settled_usage() -> tuple[float, int]:
    """The object store's (MiB, objects) once unchanged for SETTLE_S (at most DEADLINE_S)."""
    from rewardloop.cluster.object_store_bench import plasma_usage

    last, stable_from, deadline = plasma_usage(), time.monotonic(), time.monotonic() + DEADLINE_S
    while time.monotonic() - stable_from < SETTLE_S and time.monotonic() < deadline:
        time.sleep(0.1)  # polling Ray's asynchronous release, with a deadline
        now = plasma_usage()
        if now != last:
            last, stable_from = now, time.monotonic()
    return last


def held_after(mb: float, versions: int, keep: int) -> dict:
    """MiB and objects the store holds after `versions` publishes and fetches, kept `keep`."""
    from rewardloop.bench.weights import synthetic_state
    from rewardloop.cluster.object_store_bench import ObjectStoreFanout

    before = settled_usage()  # what an earlier run left is released first
    make_state = functools.partial(synthetic_state, mb)
    with ObjectStoreFanout(make_state, fetchers=1, num_cpus=0.5, keep=keep) as fan:
        for version in range(1, versions + 1):
            fan.deliver(version, 1)
        mib, objects = settled_usage()
    return {"mib": mib - before[0], "objects": objects - before[1]}


def main(argv: list[str]) -> dict:
    from rewardloop.cluster.actors import RECENT_VERSIONS
    from rewardloop.cluster.object_store_bench import local_ray

    p = common.parser("pinned", __doc__.split("\n")[0])
    p.set_defaults(repeats=2)
    p.add_argument("--mb", type=float, default=100.0, help="size of one version's state")
    p.add_argument("--versions", type=int, default=10)
    a = p.parse_args(argv)
    keeps = {"ours": RECENT_VERSIONS, "old": OLD_KEEP}
    runs: dict[str, list[dict]] = {k: [] for k in keeps}
    with local_ray(num_cpus=2):
        for rep in range(a.repeats):  # interleaved: ours, old, ours, old, ...
            for kind, keep in keeps.items():
                runs[kind].append(held_after(a.mb, a.versions, keep))
                common.log(f"pinned {kind} (keep {keep}) #{rep}: {runs[kind][-1]}")
    med = {k: common.median(r["mib"] for r in v) for k, v in runs.items()}
    what = f"object store held after {a.versions} versions of {a.mb:g} MB, once fetched"
    return common.result(
        "pinned",
        argv,
        [
            common.comparison(
                what,
                (f"registry keep {RECENT_VERSIONS} (the newest)", med["ours"], "MiB"),
                (f"registry keep {OLD_KEEP}", med["old"], "MiB"),
            )
        ],
        settings={"mb": a.mb, "versions": a.versions, "repeats": a.repeats, "keeps": keeps},
        figures={
            k: {"mib": common.spread(r["mib"] for r in v), "runs": v} for k, v in runs.items()
        },
    )
