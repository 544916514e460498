"""`bench ingest`: trajectories into the learner over the gRPC stream vs a raw TCP socket.

A worker process streams N trajectories (256 tokens each: a 32-token prompt and a 224-token
completion with one behavior log-prob per token, ids and reward parts as rollout workers fill
them) to a real `IngestServer` in this process, through a real `TrajectoryClient`. A drain
thread takes each group from the buffer as soon as it completes (`--take-groups 3` takes a
learner step's worth at once): an infinitely fast learner, so credits come back and the figure
is what the stream itself can carry. The baseline moves the very same serialized
`TrajectoryBatch` bytes, length-prefixed, over a plain loopback socket to a thread that only
reads them. More baselines say what bounds the gRPC figure: raw TCP + protobuf parse, a
bare gRPC stream of the same bytes (no decoding, no credits, a 0-byte answer per message: the
most any gRPC-Python ingest can do at this batch size), and two floors between the bare stream
and ours (`ingest_floors.py`: parse + Ack; parse + the column checks + Ack), which say how
much of the gap any ingest that reads its messages pays. "The same bytes" is the column form
`TrajectoryClient` sends (`serialized_batches`). Ours, the bare stream and the floors run back
to back, their order rotated each repeat, and each one's ratio to the bare stream is also
reported per repeat (`figures.*_vs_bare_per_repeat`), so load drift on a shared machine shows
as spread instead of bias; each process's CPU time per message (`*_cpu_us_per_message`) is
the steadier figure there; `credit_only_acks` counts the Acks that carried only credits (a
message and a wake-up each). A single-threaded profile times each stage of our path.

    rewardloop bench ingest --json [--repeats 3] [--trajectories 16384] [--batch-size 24]
                                   [--capacity 96] [--take-groups 1] [--per-call 24]
"""

from __future__ import annotations

import threading
import time
from functools import partial

import numpy as np

from rewardloop.bench import common, ingest_floors
from rewardloop.config import LearnerConfig
from rewardloop.trajectory import RewardPart, Trajectory

GOAL_RATIO_MIN = 0.5
GOAL_BARE_RATIO_MIN = 0.8  # issue 11: ours >= 0.8 x a bare gRPC-Python stream of the same bytes
VOCAB = 32000  # a realistic LM vocabulary
READERS = ("alice", "bob", "carol")


def make_trajectories(
    n: int,
    seed: int,
    prompt_len: int = 32,
    completion_len: int = 224,
    group_size: int = 8,
    worker_id: str = "worker-0",
) -> list[Trajectory]:
    """`n` trajectories in groups of `group_size`, fields filled the way rollout workers do."""
    rng = np.random.default_rng(seed)
    out: list[Trajectory] = []
    while len(out) < n:
        group_id = rng.bytes(16).hex()
        prompt = rng.integers(0, VOCAB, prompt_len)
        key = READERS[len(out) // group_size % len(READERS)]
        for _ in range(group_size):
            liked = float(rng.random() < 0.4)
            out.append(
                Trajectory(
                    id=rng.bytes(16).hex(),
                    group_id=group_id,
                    prompt_ids=prompt,
                    completion_ids=rng.integers(0, VOCAB, completion_len),
                    behavior_logprobs=-rng.exponential(1 / 0.7, completion_len),
                    reward=liked,
                    policy_version=0,
                    worker_id=worker_id,
                    group_size=group_size,
                    prompt_key=key,
                    reward_parts=[RewardPart("like", liked)],
                    feedback_source="persona",
                    feedback_latency_s=0.0,
                    rater=key,
                )
            )
    return out[:n]


def serialized_batches(trajs: list[Trajectory], batch_size: int) -> list[bytes]:
    """The TrajectoryBatch messages a TrajectoryClient sends (the column form), serialized."""
    from rewardloop.wire_columns import batch_to_columns

    return [
        batch_to_columns(i // batch_size + 1, trajs[i : i + batch_size]).SerializeToString()
        for i in range(0, len(trajs), batch_size)
    ]


# ---- the worker side (runs in a spawned process) ---------------------------------------


def client_grpc(address: str, n: int, seed: int, batch_size: int, per_call: int) -> dict:
    """Stream n trajectories through a TrajectoryClient; `per_call` > 0 sends that many per call."""
    from rewardloop.actors.trajectory_client import TrajectoryClient

    warmup = make_trajectories(8, seed + 10_000, worker_id="bench")
    trajs = make_trajectories(n, seed, worker_id="bench")
    nbytes = sum(len(b) for b in serialized_batches(trajs, batch_size))
    with TrajectoryClient(address, "bench", timeout_s=60.0, batch_size=batch_size) as client:
        client.send(warmup)  # opens the stream (hello, credits) outside the timed part
        step = per_call if per_call > 0 else len(trajs)
        batches0 = client.stats()["batches"]
        t0, cpu0 = time.perf_counter(), time.process_time()
        accepted = 0
        for i in range(0, len(trajs), step):
            accepted += client.send(trajs[i : i + step]).n_accepted
        seconds, cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
        batches = client.stats()["batches"] - batches0
    return {
        "seconds": seconds,
        "worker_cpu_s": cpu_s,
        "bytes": nbytes,
        "n": len(trajs),
        "accepted": accepted,
        "messages": batches,
    }


def client_tcp(port: int, n: int, seed: int, batch_size: int) -> dict:
    """Send the same serialized batches over a raw socket."""
    frames = serialized_batches(make_trajectories(n, seed, worker_id="bench"), batch_size)
    seconds = common.send_frames(port, frames)
    return {"seconds": seconds, "bytes": sum(len(f) for f in frames), "n": n, "accepted": n}


# ---- the learner side (this process) ---------------------------------------------------


def run_grpc(
    workers: common.Workers,
    n: int,
    seed: int,
    batch_size: int,
    capacity: int,
    per_call: int,
    take_groups: int,
) -> dict:
    from rewardloop.learner.buffer import TrajectoryBuffer
    from rewardloop.learner.ingest_server import IngestServer

    buffer = TrajectoryBuffer(capacity=capacity, max_staleness=1)
    server = IngestServer(buffer, version_fn=lambda: 0, vocab_size=VOCAB, capacity=capacity)
    port = server.start()
    stop = threading.Event()

    def drain() -> None:  # an infinitely fast learner: takes groups as soon as they complete
        while not stop.is_set():
            buffer.take_groups(take_groups, 0, timeout_s=0.1)

    thread = threading.Thread(target=drain, daemon=True, name="bench-drain")
    thread.start()
    try:
        cpu0 = time.process_time()  # the learner process: gRPC, ingest, the drain
        out = workers.call(0, client_grpc, f"127.0.0.1:{port}", n, seed, batch_size, per_call)
        out["learner_cpu_s"] = time.process_time() - cpu0
    finally:
        stop.set()
        thread.join(timeout=5)
        server.stop(grace_s=1.0)
    out["server"] = {
        k: v
        for k, v in server.stats().items()
        if k in ("batches", "bytes", "accepted", "credit_acks", "acks_sent")
    }
    if out["accepted"] != out["n"]:
        raise RuntimeError(f"ingest bench: only {out['accepted']} of {out['n']} accepted")
    return out


def run_tcp(workers: common.Workers, n: int, seed: int, batch_size: int, parse: bool) -> dict:
    on_frame = None
    if parse:
        from rewardloop.pb import trajectory_pb2

        def on_frame(frame: bytearray) -> None:
            trajectory_pb2.TrajectoryBatch.FromString(bytes(frame))

    sink = common.FrameSink(on_frame)
    try:
        return workers.call(0, client_tcp, sink.port, n, seed, batch_size)
    finally:
        sink.close()


def _figure(rs: list[dict]) -> dict:
    secs = [x["seconds"] for x in rs]
    out = {
        "seconds": common.spread(secs),
        "trajectories_per_s": round(rs[0]["n"] / common.median(secs), 1),
        "MB_per_s": round(rs[0]["bytes"] / common.median(secs) / 1e6, 2),
        "bytes": rs[0]["bytes"],
        "trajectories": rs[0]["n"],
    }
    if "messages" in rs[0]:
        out["messages"] = rs[0]["messages"]
        out["us_per_message"] = round(common.median(secs) / rs[0]["messages"] * 1e6, 1)
        # CPU per message, each process (steadier than wall time on a loaded machine)
        for side in ("learner", "worker"):
            cpu = [x[f"{side}_cpu_s"] / x["messages"] * 1e6 for x in rs]
            out[f"{side}_cpu_us_per_message"] = common.spread(cpu)
    if "server" in rs[0]:  # Acks that carried only credits: a message (and wake-up) each
        out["credit_only_acks"] = common.spread([x["server"].get("credit_acks", 0) for x in rs])
    return out


def _vs_bare_per_repeat(runs: dict[str, list[dict]], name: str) -> dict:
    """`name` / the bare stream per repeat (same bytes, run back to back): throughput ratio =
    time ratio^-1."""
    ratios = [
        b["seconds"] / x["seconds"]
        for x, b in zip(runs[name], runs["grpc_bare_stream"], strict=True)
    ]
    return {"values": [round(x, 3) for x in ratios], **common.spread(ratios)}


def main(argv: list[str]) -> dict:
    from rewardloop.bench import ingest_profile

    p = common.parser("ingest", __doc__.split("\n")[0])
    p.add_argument("--trajectories", type=int, default=16384)
    p.add_argument("--batch-size", type=int, default=24, help="trajectories per TrajectoryBatch")
    p.add_argument("--capacity", type=int, default=96, help="learner buffer capacity = credits")
    p.add_argument(
        "--take-groups",
        type=int,
        default=1,
        help="groups the drain (an infinitely fast learner) takes at once "
        f"(a learner step takes learner.groups_per_step = {LearnerConfig.groups_per_step})",
    )
    p.add_argument(
        "--per-call",
        type=int,
        default=24,
        help="also time a worker that sends this many per send() call (0 = skip)",
    )
    args = p.parse_args(argv)
    n = args.trajectories - args.trajectories % 8 or 8
    runs: dict[str, list[dict]] = {
        "grpc": [],
        "grpc_per_call": [],
        "grpc_bare_stream": [],
        "grpc_floor_parse_ack": [],
        "grpc_floor_parse_check_ack": [],
        "tcp": [],
        "tcp_parse": [],
    }
    grpc_args = (args.batch_size, args.capacity)
    with common.Workers(1) as workers:
        for r in range(args.repeats):
            seed = 1000 * (r + 1)
            common.log(f"ingest: repeat {r + 1}/{args.repeats}")
            runs["tcp"].append(run_tcp(workers, n, seed, args.batch_size, parse=False))
            runs["tcp_parse"].append(run_tcp(workers, n, seed + 1, args.batch_size, parse=True))
            # ours, the bare stream and the floors back to back, the order rotated each repeat,
            # so drift in the machine's load hits all alike; per-repeat ratios are reported too
            order = [
                ("grpc", partial(run_grpc, workers, n, seed + 2, *grpc_args, 0, args.take_groups))
            ]
            for k, (mode, name) in enumerate(ingest_floors.FIGURES.items()):
                floor_args = (workers, mode, n, seed + 4 + k, args.batch_size, VOCAB)
                order.append((name, partial(ingest_floors.run, *floor_args)))
            for name, run in order[r % len(order) :] + order[: r % len(order)]:
                runs[name].append(run())
            if args.per_call:
                runs["grpc_per_call"].append(
                    run_grpc(workers, n, seed + 3, *grpc_args, args.per_call, args.take_groups)
                )
    figures = {name: _figure(rs) for name, rs in runs.items() if rs}
    grpc, tcp, bare = figures["grpc"], figures["tcp"], figures["grpc_bare_stream"]
    pair = figures["ratio_vs_bare_per_repeat"] = _vs_bare_per_repeat(runs, "grpc")
    for name in ("grpc_floor_parse_ack", "grpc_floor_parse_check_ack"):  # what any ingest pays
        figures[f"{name}_vs_bare_per_repeat"] = _vs_bare_per_repeat(runs, name)
    comparisons = [
        common.comparison(
            "ingest throughput: gRPC stream vs raw TCP",
            ("IngestServer via TrajectoryClient", grpc["MB_per_s"], "MB/s"),
            ("raw TCP, same bytes", tcp["MB_per_s"], "MB/s"),
            ratio_min=GOAL_RATIO_MIN,
            note=f"{grpc['trajectories_per_s']:.0f} vs {tcp['trajectories_per_s']:.0f} trajectories/s",
        ),
        common.comparison(
            "ingest throughput: gRPC stream vs raw TCP + protobuf parse",
            ("IngestServer via TrajectoryClient", grpc["MB_per_s"], "MB/s"),
            ("raw TCP + TrajectoryBatch.FromString", figures["tcp_parse"]["MB_per_s"], "MB/s"),
        ),
        common.comparison(
            "ingest throughput: gRPC stream vs a bare gRPC stream of the same bytes",
            ("IngestServer via TrajectoryClient", grpc["MB_per_s"], "MB/s"),
            ("bare gRPC-Python stream (no decode, no credits)", bare["MB_per_s"], "MB/s"),
            ratio_min=GOAL_BARE_RATIO_MIN,
            note=f"bare stream: {bare['us_per_message']} us per message of "
            f"{args.batch_size} trajectories; ours: {grpc['us_per_message']} us; per-repeat "
            f"ratio min/median/max {pair['min']:.2f}/{pair['median']:.2f}/"
            f"{pair['max']:.2f}; CPU us per message, learner "
            f"{grpc['learner_cpu_us_per_message']['median']:.0f} vs "
            f"{bare['learner_cpu_us_per_message']['median']:.0f}, worker "
            f"{grpc['worker_cpu_us_per_message']['median']:.0f} vs "
            f"{bare['worker_cpu_us_per_message']['median']:.0f}",
        ),
        *(
            common.comparison(
                f"floor: a stream that only {what} vs the bare stream, same bytes",
                (f"{what} (no buffer, no credits)", figures[name]["MB_per_s"], "MB/s"),
                ("bare gRPC-Python stream", bare["MB_per_s"], "MB/s"),
                note=f"per-repeat ratio median {figures[f'{name}_vs_bare_per_repeat']['median']}"
                f"; learner CPU us per message {figures[name]['learner_cpu_us_per_message']['median']:.0f}",
            )
            for name, what in (
                ("grpc_floor_parse_ack", "parses each batch and answers its Ack"),
                ("grpc_floor_parse_check_ack", "parses, checks the columns, answers the Ack"),
            )
        ),
        common.comparison(
            "transport ceiling: bare gRPC-Python stream vs raw TCP, same bytes",
            ("bare gRPC-Python stream", bare["MB_per_s"], "MB/s"),
            ("raw TCP, same bytes", tcp["MB_per_s"], "MB/s"),
        ),
    ]
    if "grpc_per_call" in figures:
        comparisons.append(
            common.comparison(
                f"ingest, {args.per_call} trajectories per send() (one generation) vs all at once",
                ("send() per generation", figures["grpc_per_call"]["trajectories_per_s"], "traj/s"),
                ("one pipelined send()", grpc["trajectories_per_s"], "traj/s"),
            )
        )
    return common.result(
        "ingest",
        argv,
        comparisons,
        settings={
            "trajectories": n,
            "tokens_per_trajectory": 256,
            "batch_size": args.batch_size,
            "capacity": args.capacity,
            "take_groups": args.take_groups,
            "repeats": args.repeats,
            "vocab": VOCAB,
        },
        figures=figures,
        profile=ingest_profile.profile(min(n, 2048), args.batch_size),
    )
