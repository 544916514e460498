"""The learner's front on "host a" of the network-fault test: run as a process in a namespace.

    python tests/integration/netns_learner.py --host 10.200.7.1 --out DIR --cache CACHE

Serves the real IngestServer and WeightServer (token from $NETNS_TOKEN, publishing the default
model as version 0) on `--host`, and plays the trainer: it takes every complete group from the
buffer as it fills, so credits keep flowing back to the worker. It records each trajectory the
buffer was offered and its verdict, writes `progress.json` (counts) every 0.1 s, and on SIGTERM
stops and writes `final.json`: the accepted ids in order, the verdict counts, the servers'
stats.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
from collections import Counter
from pathlib import Path

from rewardloop.auth import ServerSecurity
from rewardloop.config import load_config
from rewardloop.learner.buffer import TrajectoryBuffer
from rewardloop.learner.ingest_server import IngestServer
from rewardloop.learner.weight_server import WeightServer
from rewardloop.modeling import load_policy

INGEST_PORT, WEIGHTS_PORT = 50061, 50062


class RecordingBuffer(TrajectoryBuffer):
    """The real buffer; every verdict it gives is written down for the test."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.accepted: list[str] = []
        self.verdicts: Counter[str] = Counter()

    def add_batch(self, trajs, current_version):  # `add` of one row comes here too
        verdicts = super().add_batch(trajs, current_version)
        for traj, (status, _) in zip(trajs, verdicts, strict=True):
            self.verdicts[status] += 1
            if status == "accepted":
                self.accepted.append(traj.id)
        return verdicts


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--cache", required=True)
    args = p.parse_args()
    out = Path(args.out)
    cfg = load_config(None, [f"model.cache_dir={args.cache}"])
    model, _, _ = load_policy(cfg.model)
    group = cfg.rollout.group_size
    buffer = RecordingBuffer(capacity=4 * group, max_staleness=4)
    security = ServerSecurity(token=os.environ["NETNS_TOKEN"])
    vocab = model.get_input_embeddings().num_embeddings
    ingest = IngestServer(
        buffer,
        lambda: 0,
        host=args.host,
        port=INGEST_PORT,
        vocab_size=vocab,
        credit_unit=group,
        security=security,
    )
    weights = WeightServer(host=args.host, port=WEIGHTS_PORT, security=security)
    ingest.start()
    weights.start()
    weights.publish(0, model.state_dict())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    taken: list[str] = []

    def train() -> None:  # the trainer's side: take groups as they complete
        while not stop.is_set():
            groups = buffer.take_groups(1, 0, timeout_s=0.1)
            for g in groups or []:
                taken.extend(t.id for t in g)

    trainer = threading.Thread(target=train, daemon=True)
    trainer.start()
    (out / "ready.json").write_text(
        json.dumps({"ingest": ingest.address, "weights": weights.address})
    )
    while not stop.wait(0.1):
        tmp = out / "progress.tmp"
        streams = ingest.stats().get("streams_total", 0)
        tmp.write_text(
            json.dumps({"accepted": len(buffer.accepted), "streams": streams, **buffer.verdicts})
        )
        tmp.replace(out / "progress.json")
    trainer.join(5)
    ingest.stop(grace_s=1.0)
    weights.stop(grace_s=1.0)
    final = {
        "accepted": buffer.accepted,
        "verdicts": dict(buffer.verdicts),
        "taken": taken,
        "in_buffer": len(buffer),
        "ingest": {k: v for k, v in ingest.stats().items() if k != "credits"},
        "weights": weights.stats(),
    }
    (out / "final.json").write_text(json.dumps(final, default=str))


if __name__ == "__main__":
    main()
