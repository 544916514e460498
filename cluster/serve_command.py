"""`rewardloop serve`: the live service (API + replicas + learner) and, if asked, its simulated
product; on exit `summary.json` and `reward_curve.png` by version, with the canary decisions.

    rewardloop serve [--config FILE] [--set ...] [--out DIR] [--duration-s S]

Ray is started here (or joined: cluster.address); the replicas are `cluster.serving`
actors; everything else is `rewardloop.serving`. SIGINT / SIGTERM stop it cleanly.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import ray
import torch

from rewardloop.config import replace, to_dict
from rewardloop.modeling import load_policy
from rewardloop.run_outputs import write_json
from rewardloop.serving import stack
from rewardloop.serving.sim_product import SimProduct

from .placement import connect
from .serving import ReplicaPool

WINDOW_S = 60.0  # the like rate is reported per minute of serving


def serve(cfg, progress: bool = True) -> dict:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, cfg.learner.torch_threads))
    started_ray = not ray.is_initialized()
    connect(replace(cfg, rollout={"num_workers": cfg.serve.replicas}))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    model, tokenizer, _ = load_policy(cfg)
    pool = ReplicaPool(cfg, cfg.serve.replicas, seed=cfg.seed)
    st = stack.build(
        cfg, model, tokenizer, out, replicas=(pool.generate, pool.publish, pool.retain)
    )
    (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2, sort_keys=True))
    print(f"serving on {st.server.url}/v1  (admin: {out / stack.ADMIN_FILE})", flush=True)
    sim = None
    if cfg.serve.sim_users:
        keys = stack.api_keys(cfg)
        sim = SimProduct(st.server.url, cfg, keys[0] if keys else "", seed=cfg.seed).start()
    t0 = time.time()
    try:
        while not stop.wait(10.0):
            elapsed = time.time() - t0
            if progress:
                _progress(st, sim, elapsed)
            if cfg.serve.duration_s and elapsed >= cfg.serve.duration_s:
                break
    finally:
        if sim is not None:
            sim.stop()
        summary = summarize(st, sim, time.time() - t0, pool)
        write_json(out / "summary.json", summary)
        plot(st, sim, out / "reward_curve.png")
        st.stop()
        pool.close()
        if started_ray:
            ray.shutdown()
    return summary


def _progress(st, sim, elapsed: float) -> None:
    snap = st.router.snapshot()
    rate = sim.like_rate(max(0.0, elapsed - WINDOW_S), elapsed)[0] if sim else None
    live = "-" if rate is None else f"{rate:.2f}"
    print(f"[{elapsed:6.0f}s] stable v{snap['stable']} canary {snap['canary']} learner "
          f"v{st.learner.version}  like rate (last min) {live}  {snap['counts']}", flush=True)  # fmt: skip


def summarize(st, sim, seconds: float, pool=None) -> dict:
    snap = st.router.snapshot()
    out = {
        "seconds": round(seconds, 1),
        "stable": snap["stable"],
        "learner_version": st.learner.version,
        "versions": snap["versions"],
        "canary_decisions": snap["decisions"],
        "canary_counts": snap["counts"],
        "learner": dict(st.learner.counts),
        "serve": st.core.stats(),
        "http": dict(st.server.counts),
    }
    if pool is not None:
        out["replicas"] = pool.stats()
    if sim is not None:
        minutes = []
        for start in range(0, int(seconds) + 1, int(WINDOW_S)):
            rate, n = sim.like_rate(start, start + WINDOW_S)
            minutes.append({"start_s": start, "like_rate": rate, "ratings": n})
        rated = [m for m in minutes if m["ratings"] >= 20]
        first, last = (rated[0], rated[-1]) if rated else (None, None)
        versions = [v for v in sim.by_version() if v["ratings"] >= 20]
        out["live"] = {
            "by_minute": minutes,
            "first_minute_like_rate": first and first["like_rate"],
            "last_minute_like_rate": last and last["like_rate"],
            "like_rate_gain": (last["like_rate"] - first["like_rate"]) if rated else None,
            "by_version": versions,  # versions with >= 20 ratings sent, oldest first
            "version_like_rate_gain": (versions[-1]["like_rate"] - versions[0]["like_rate"])
            if versions
            else None,
            "sim": dict(sim.counts),
        }
    return out


def plot(st, sim, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    if sim is not None and sim.liked:
        xs = sorted(sim.liked)
        window = max(20, len(xs) // 30)
        t = [x[0] for x in xs[window - 1 :]]
        rate = [
            sum(x[2] for x in xs[i - window + 1 : i + 1]) / window
            for i in range(window - 1, len(xs))
        ]
        ax.plot(t, rate, label=f"live like rate (last {window} ratings)")
    for d in st.router.snapshot()["decisions"]:
        at = d["at"] - (sim.t0 if sim is not None else d["at"])
        color = "green" if d["action"] == "promote" else "red"
        ax.axvline(at, color=color, alpha=0.3, linewidth=1)
    ax.set_xlabel("seconds served (green: canary promoted, red: rolled back)")
    ax.set_ylabel("like rate")
    ax.set_ylim(0, 1)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
