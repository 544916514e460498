"""`bench weights`: seconds to deliver one weight version to 1, 2 and 4 workers, per transport.

Workers are separate processes, as rollout workers are. For each payload (the tiny default
model, and a synthetic ~100 MB state dict) and each worker count, one version is delivered:

- grpc: the learner's path for external workers. `state_dict_to_bytes` + `WeightServer.publish`
  in this process, then every worker's `WeightClient.poll_bytes` (chunks, sha256 check) and
  `state_dict_from_bytes`, so the worker holds tensors it can load. `grpc_transfer` is the
  same without the (de)serialization: pre-built safetensors bytes, poll only.
- object_store: the in-cluster path. A publisher actor `ray.put`s the state dict (as
  LearnerActor does), then every worker actor asks it for the ref and `ray.get`s the tensors.
- raw TCP: the same safetensors bytes, length-prefixed, one loopback connection per worker.
- memcpy: one copy of the same bytes into a preallocated buffer (the floor).

Time runs from the moment the learner has the new weights until the last worker has them.

    rewardloop bench weights --json [--sizes tiny,100] [--workers 1,2,4] [--no-ray]
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from rewardloop.bench import common

GRPC_RATIO_MIN = 0.6
OBJECT_STORE_FANOUT_MAX = 2.0


def synthetic_state(mb: float, seed: int = 0) -> dict[str, torch.Tensor]:
    """A float32 state dict of about `mb` megabytes in 4 MB matrices (no download needed)."""
    g = torch.Generator().manual_seed(seed)
    total = int(mb * 1e6 / 4)
    state, i = {}, 0
    while total > 0:
        n = min(total, 1 << 20)
        state[f"layers.{i}.weight"] = torch.randn(n, generator=g).view(-1, math.gcd(n, 1024))
        total -= n
        i += 1
    return state


def payload_state(size: str) -> tuple[str, dict[str, torch.Tensor]]:
    """("tiny default model", state) or ("synthetic N MB", state)."""
    if size == "tiny":
        from rewardloop.config import ModelConfig
        from rewardloop.modeling import load_policy

        model, _, _ = load_policy(ModelConfig())
        return "tiny default model", {k: v.detach().clone() for k, v in model.state_dict().items()}
    return f"synthetic {float(size):g} MB state dict", synthetic_state(float(size))


# ---- worker side (spawned processes) ---------------------------------------------------

_CLIENTS: dict = {}


def worker_grpc(address: str, have_version: int, decode: bool) -> dict:
    from rewardloop.actors.weight_client import WeightClient
    from rewardloop.weight_wire import state_dict_from_bytes

    t_start = time.monotonic()
    torch.set_num_threads(1)
    client = _CLIENTS.get(address) or _CLIENTS.setdefault(address, WeightClient(address, 120.0))
    got = client.poll_bytes(have_version)
    if got is None:
        raise RuntimeError(f"weights bench: no version newer than {have_version}")
    t_got = time.monotonic()
    if decode:
        state_dict_from_bytes(got[1])
    t_end = time.monotonic()
    return {
        "t_start": t_start,
        "t_got": t_got,
        "t_end": t_end,
        "bytes": len(got[1]),
        "version": got[0],
    }


def worker_tcp(port: int) -> dict:
    data = common.fetch_payload(port)
    return {"t_end": time.monotonic(), "bytes": len(data)}


class _Publisher:
    """Ray actor body: holds the state dict and puts each version in the object store."""

    def __init__(self, size: str):
        torch.set_num_threads(1)
        self.state = payload_state(size)[1]
        self.latest = None

    def publish(self, version: int) -> float:
        import ray

        t0 = time.monotonic()
        self.latest = (version, [ray.put(self.state)])  # as LearnerActor._publish
        return time.monotonic() - t0

    def latest_weights(self, have_version: int):
        return self.latest if self.latest and self.latest[0] > have_version else None


class _Fetcher:
    """Ray actor body: a rollout worker's `_object_store_weights`."""

    def fetch(self, publisher, have_version: int) -> dict:
        import ray

        version, (ref,) = ray.get(publisher.latest_weights.remote(have_version), timeout=120)
        state = ray.get(ref, timeout=120)
        nbytes = sum(t.numel() * t.element_size() for t in state.values())
        return {"t_end": time.monotonic(), "bytes": nbytes, "version": version}


# ---- one delivery per transport --------------------------------------------------------


def deliver_grpc(workers, server, state, payload, version: int, k: int, full: bool) -> float:
    from rewardloop.weight_wire import state_dict_to_bytes

    t0 = time.monotonic()
    server.publish(version, state_dict_to_bytes(state) if full else payload)
    t_published = time.monotonic()
    ends = workers.map(k, worker_grpc, [(server.address, version - 1, full)] * k)
    phases = {  # where one delivery went: learner side, hand-off, transfer, decode
        "publish_s": t_published - t0,
        "to_worker_s": max(e["t_start"] for e in ends) - t_published,
        "poll_bytes_s": max(e["t_got"] - e["t_start"] for e in ends),
        "decode_s": max(e["t_end"] - e["t_got"] for e in ends),
    }
    return max(e["t_end"] for e in ends) - t0, phases


def deliver_tcp(workers, port: int, k: int) -> float:
    t0 = time.monotonic()
    ends = workers.map(k, worker_tcp, [(port,)] * k)
    return max(e["t_end"] for e in ends) - t0


def deliver_object_store(publisher, fetchers, version: int, k: int) -> float:
    import ray

    t0 = time.monotonic()
    ray.get(publisher.publish.remote(version), timeout=120)
    ends = ray.get([f.fetch.remote(publisher, version - 1) for f in fetchers[:k]], timeout=300)
    return max(e["t_end"] for e in ends) - t0


def memcpy_s(payload: bytes, repeats: int) -> float:
    src = np.frombuffer(payload, dtype=np.uint8)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # touch the pages once
    return common.median(common.time_call(lambda: np.copyto(dst, src)) for _ in range(repeats))


def profile_stages(state: dict, payload: bytes, repeats: int) -> dict:
    """Single-threaded seconds of each step on the gRPC path (where its time goes)."""
    import hashlib

    from rewardloop.weight_wire import (
        join_chunks,
        state_dict_from_bytes,
        state_dict_to_bytes,
        weight_chunks,
    )

    chunks = list(weight_chunks(0, payload))

    def med(fn) -> float:
        return common.median(common.time_call(fn) for _ in range(max(repeats, 3)))

    return {
        "learner: state_dict_to_bytes_s": med(lambda: state_dict_to_bytes(state)),
        "server: sha256_s (per subscriber)": med(lambda: hashlib.sha256(payload).digest()),
        "server: weight_chunks_s (per subscriber, incl. sha256)": med(
            lambda: list(weight_chunks(0, payload))
        ),
        "client: join_chunks_s (incl. sha256)": med(lambda: join_chunks(iter(chunks))),
        "client: state_dict_from_bytes_s": med(lambda: state_dict_from_bytes(payload)),
    }


def measure_size(size: str, counts: list[int], workers, use_ray: bool, repeats: int) -> dict:
    from rewardloop.learner.weight_server import WeightServer
    from rewardloop.weight_wire import state_dict_to_bytes

    label, state = payload_state(size)
    payload = state_dict_to_bytes(state)
    nbytes = len(payload)
    common.log(f"weights: {label}, {nbytes / 1e6:.1f} MB")
    stages = profile_stages(state, payload, repeats)
    out: dict = {
        "payload": label,
        "bytes": nbytes,
        "memcpy_s": memcpy_s(payload, max(repeats, 5)),
        "stages": stages,
        "by_workers": {},
    }
    server = WeightServer(port=0)
    server.start()
    tcp = common.PayloadServer(payload)
    version = 0
    publisher = fetchers = None
    if use_ray:
        import ray

        publisher = ray.remote(_Publisher).options(num_cpus=1).remote(size)
        fetchers = [ray.remote(_Fetcher).options(num_cpus=1).remote() for _ in range(max(counts))]
    try:
        for k in counts:
            times: dict[str, list[float]] = {"tcp": [], "grpc": [], "grpc_transfer": []}
            if use_ray:
                times["object_store"] = []
            phases: list[dict] = []
            for r in range(repeats + 1):  # the first round warms channels and imports up
                got = {"tcp": deliver_tcp(workers, tcp.port, k)}
                version += 1
                got["grpc"], ph = deliver_grpc(workers, server, state, payload, version, k, True)
                version += 1
                got["grpc_transfer"], _ = deliver_grpc(
                    workers, server, state, payload, version, k, full=False
                )
                if r:
                    phases.append(ph)
                if use_ray:
                    got["object_store"] = deliver_object_store(publisher, fetchers, version, k)
                if r:
                    for name, v in got.items():
                        times[name].append(v)
            out["by_workers"][str(k)] = {name: common.spread(v) for name, v in times.items()}
            out["by_workers"][str(k)]["grpc_phases_median_s"] = {
                key: round(common.median(p[key] for p in phases), 5) for key in phases[0]
            }
            common.log(
                f"  {k} worker(s): "
                + ", ".join(f"{n} {common.median(v) * 1e3:.1f} ms" for n, v in times.items())
            )
    finally:
        server.stop(grace_s=1.0)
        tcp.close()
        if use_ray:
            import ray

            for actor in [publisher, *fetchers]:
                ray.kill(actor)
    return out


def comparisons_for(size: str, m: dict, counts: list[int], use_ray: bool) -> list[dict]:
    med = {
        k: {n: v["median"] for n, v in d.items() if "median" in v}
        for k, d in m["by_workers"].items()
    }
    mb = m["bytes"] / 1e6
    out = []
    for k in counts:
        d = med[str(k)]
        out.append(
            common.comparison(
                f"weights {m['payload']} ({mb:.1f} MB) to {k} worker(s): gRPC vs raw TCP",
                (
                    "WeightServer/WeightClient incl. (de)serialize",
                    mb * k / d["grpc"],
                    "MB/s delivered",
                ),
                ("raw TCP, same bytes", mb * k / d["tcp"], "MB/s delivered"),
                ratio_min=GRPC_RATIO_MIN,
                note=f"{d['grpc'] * 1e3:.1f} ms vs {d['tcp'] * 1e3:.1f} ms; transport only "
                f"(no (de)serialize) {d['grpc_transfer'] * 1e3:.1f} ms",
            )
        )
    if use_ray and "1" in med and str(max(counts)) in med:
        k = max(counts)
        out.append(
            common.comparison(
                f"weights {m['payload']} ({mb:.1f} MB): object store to {k} workers vs one put+get",
                (f"ray.put + {k} workers ray.get", med[str(k)]["object_store"], "s"),
                ("ray.put + 1 worker ray.get", med["1"]["object_store"], "s"),
                ratio_max=OBJECT_STORE_FANOUT_MAX,
            )
        )
    if "1" in med:
        out.append(
            common.comparison(
                f"weights {m['payload']} ({mb:.1f} MB) to 1 worker: gRPC vs memcpy",
                ("gRPC delivery", med["1"]["grpc"], "s"),
                ("memcpy of the same bytes", m["memcpy_s"], "s"),
            )
        )
    return out


def main(argv: list[str]) -> dict:
    p = common.parser("weights", __doc__.split("\n")[0])
    p.add_argument(
        "--sizes",
        default="tiny,100",
        help="comma list: tiny (the default model) or a size in MB (synthetic)",
    )
    p.add_argument("--workers", default="1,2,4", help="comma list of worker counts")
    p.add_argument("--no-ray", action="store_true", help="skip the object-store transport")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # as the learner (learner.torch_threads); see README: threads
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    counts = sorted({int(c) for c in args.workers.split(",")})
    use_ray = not args.no_ray
    if use_ray:
        import ray

        ray.init(
            num_cpus=max(counts) + 2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    results, comps = {}, []
    try:
        with common.Workers(max(counts)) as workers:
            for size in sizes:
                results[size] = measure_size(size, counts, workers, use_ray, args.repeats)
                comps += comparisons_for(size, results[size], counts, use_ray)
    finally:
        if use_ray:
            import ray

            ray.shutdown()
    return common.result(
        "weights",
        argv,
        comps,
        settings={
            "sizes": sizes,
            "workers": counts,
            "repeats": args.repeats,
            "transports": ["grpc", "grpc_transfer", "tcp", "memcpy"]
            + (["object_store"] if use_ray else []),
        },
        figures=results,
    )
