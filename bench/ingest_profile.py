"""`bench ingest`'s single-threaded profile: CPU per trajectory of each stage of our path
(worker encode and serialize, learner parse, validate + decode, admit, the bench's drain taking
the groups, the Ack both ways), so
the stream's figures can be read against what each stage costs alone."""

from __future__ import annotations

import time

from rewardloop.bench.ingest import VOCAB, make_trajectories


def profile(n: int, batch_size: int) -> dict:
    """Single-threaded CPU microseconds per trajectory of every stage on the gRPC path."""
    from rewardloop.learner.buffer import TrajectoryBuffer
    from rewardloop.pb import trajectory_pb2
    from rewardloop.wire_columns import accepted_ids, batch_to_columns, trajectories_from_columns

    trajs = make_trajectories(n, seed=99)
    chunks = [trajs[i : i + batch_size] for i in range(0, n, batch_size)]
    stages: dict[str, float] = {}
    t = time.thread_time()
    batches = [batch_to_columns(1, chunk) for chunk in chunks]
    stages["client: encode batch (Trajectory -> columns)"] = time.thread_time() - t
    t = time.thread_time()
    blobs = [b.SerializeToString() for b in batches]
    stages["client: serialize batch"] = time.thread_time() - t
    t = time.thread_time()
    parsed = [trajectory_pb2.TrajectoryBatch.FromString(b) for b in blobs]
    stages["server: parse batch"] = time.thread_time() - t
    t = time.thread_time()
    decoded = [trajectories_from_columns(b.columns, VOCAB, 4096)[1] for b in parsed]
    stages["server: validate + decode columns (numpy) -> Trajectory"] = time.thread_time() - t
    buffer = TrajectoryBuffer(capacity=4 * batch_size, max_staleness=1)
    admit = drain = 0.0
    for batch in decoded:  # as the stream and its drain go: admit a batch, take its groups
        t = time.thread_time()
        with buffer.admitting():
            buffer.add_batch(batch, 0)
        t1 = time.thread_time()
        while buffer.take_groups(1, 0, timeout_s=0.0):
            pass
        admit, drain = admit + t1 - t, drain + time.thread_time() - t1
    stages["server: admit the batch (buffer.add_batch)"] = admit
    stages["server: the drain takes its groups (take_groups(1))"] = drain
    t = time.thread_time()
    acks = [
        trajectory_pb2.Ack(batch_seq=1, accepted_rest=True, credits=len(c)).SerializeToString()
        for c in chunks
    ]
    stages["server: build + serialize Ack"] = time.thread_time() - t
    t = time.thread_time()
    for blob, chunk in zip(acks, chunks, strict=True):
        accepted_ids(trajectory_pb2.Ack.FromString(blob), chunk)
    stages["client: parse Ack, accepted ids"] = time.thread_time() - t
    us = {k: round(v / n * 1e6, 2) for k, v in stages.items()}
    server_us = sum(v for k, v in us.items() if k.startswith("server"))
    client_us = sum(v for k, v in us.items() if k.startswith("client"))
    return {
        "us_per_trajectory": us,
        "server_us_per_trajectory": round(server_us, 2),
        "client_us_per_trajectory": round(client_us, 2),
        "server_us_per_message": round(server_us * batch_size, 1),
        "client_us_per_message": round(client_us * batch_size, 1),
        "server_bound_trajectories_per_s": round(1e6 / server_us),
        "client_bound_trajectories_per_s": round(1e6 / client_us),
    }
