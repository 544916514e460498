"""`bench ingest`'s floors: gRPC-Python streams of the same bytes that do less than ingest does.

Why: the goal compares ours with a bare stream that reads each message and answers 0 bytes.
Two floors between the two say how much of the gap any ingest must pay, whatever its code:
`parse_ack` parses each message as a `TrajectoryBatch` and answers the Ack an all-accepted
column batch gets (batch_seq, versions, incarnation, `accepted_rest`): no validation, no
buffer, no credits. `parse_check_ack` also checks the columns the way ingest must before it
trusts a row (ids and group ids read, token ids within the vocabulary and log-probs finite
with `rewardloop.wire`'s own checks, one log-prob per completion token), still building no
per-row object. Each floor serves in this process; the worker side is the bare stream's client
in a worker process, so every figure moves the very same frames.
"""

from __future__ import annotations

import time

import numpy as np

from rewardloop.bench import common

SERVICE = "rewardloop.bench.BareStream"
METHOD = f"/{SERVICE}/Stream"
FIGURES = {  # mode -> its figure's name in `bench ingest`'s JSON
    "bare": "grpc_bare_stream",
    "parse_ack": "grpc_floor_parse_ack",
    "parse_check_ack": "grpc_floor_parse_check_ack",
}


def client(port: int, n: int, seed: int, batch_size: int) -> dict:
    """The worker side: the same serialized batches as raw bytes on a bidi stream."""
    from rewardloop import grpc_util
    from rewardloop.bench.ingest import make_trajectories, serialized_batches

    frames = serialized_batches(make_trajectories(n, seed, worker_id="bench"), batch_size)
    channel = grpc_util.new_channel(f"127.0.0.1:{port}")
    try:
        call = channel.stream_stream(METHOD)  # no (de)serializers: bytes in, bytes out
        sum(1 for _ in call(iter(frames[:2]), timeout=60.0))  # connect outside the timed part
        t0, cpu0 = time.perf_counter(), time.process_time()
        answers = sum(1 for _ in call(iter(frames), timeout=120.0))
        seconds, cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        channel.close()
    if answers != len(frames):
        raise RuntimeError(f"gRPC floor stream: {answers} answers for {len(frames)} messages")
    nbytes = sum(len(f) for f in frames)
    out = {"seconds": seconds, "worker_cpu_s": cpu_s, "bytes": nbytes, "n": n, "accepted": n}
    return {**out, "messages": len(frames)}


def _answer(mode: str, vocab: int):
    """The per-message work of one floor: bytes in, the serialized answer out."""
    from rewardloop.pb import trajectory_pb2
    from rewardloop.wire import IDS_DTYPE, LOGPROBS_DTYPE, ids_ok, logprobs_ok

    if mode == "bare":
        return lambda frame: b""
    parse = trajectory_pb2.TrajectoryBatch.FromString

    def accepted(batch) -> bytes:  # the Ack of an all-accepted column batch
        out = trajectory_pb2.Ack(batch_seq=batch.batch_seq, learner_version=1, accepted_rest=True)
        out.incarnation, out.durable_version = "bench-floor", 0
        return out.SerializeToString()

    if mode == "parse_ack":
        return lambda frame: accepted(parse(frame))

    def parse_check_ack(frame: bytes) -> bytes:
        batch = parse(frame)
        cols = batch.columns
        ids, groups = list(cols.id), list(cols.group_id)
        ok = (
            len(ids) == len(groups)
            and cols.logprob_lens == cols.completion_lens
            and ids_ok(np.frombuffer(cols.prompt_ids, IDS_DTYPE), vocab)
            and ids_ok(np.frombuffer(cols.completion_ids, IDS_DTYPE), vocab)
            and logprobs_ok(np.frombuffer(cols.behavior_logprobs, LOGPROBS_DTYPE))
        )
        if not ok:
            raise ValueError("gRPC floor: the bench's own batch failed the checks")
        return accepted(batch)

    return parse_check_ack


def run(workers: common.Workers, mode: str, n: int, seed: int, batch_size: int, vocab: int):
    """One floor's stream from worker 0 to a server in this process; the learner's CPU too."""
    import grpc

    from rewardloop import grpc_util

    answer = _answer(mode, vocab)

    def stream(requests, context):
        for frame in requests:
            yield answer(frame)

    server = grpc_util.new_server(4)
    handler = grpc.stream_stream_rpc_method_handler(stream)  # bytes in, bytes out
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"Stream": handler}),)
    )
    port = grpc_util.bind(server, "127.0.0.1", 0)
    server.start()
    try:
        cpu0 = time.process_time()
        out = workers.call(0, client, port, n, seed, batch_size)
        return {**out, "learner_cpu_s": time.process_time() - cpu0}
    finally:
        server.stop(1.0).wait(2.0)
