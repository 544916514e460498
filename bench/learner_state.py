"""`bench learner_state`: does the learner's bookkeeping stay bounded as a run goes on?

The 30-minute soak showed the learner's RSS growing with the trajectory ids it had ever seen.
This drives a real `LearnerService` (a 1-layer GPT-2 of 16 tokens, so a step is milliseconds)
in this process, no servers and no Ray: each step `groups_per_step` fresh groups at the current
version go through `buffer.add`, plus one trajectory `max_staleness + 1` versions old (refused
stale, as ingest would: `ledger.reject`) and one re-send of an id trained 3 versions ago
(a duplicate); then the real `take_groups` and `_record` (a real optimizer step). At each
`--at` step it writes a real resume checkpoint and reports its bytes (all of `state.pt`, and
the part that is not model or optimizer tensors) and the sizes of the id structures (buffer
seen ids and closed groups, ledger decided ids) and of the step records kept in memory.

    rewardloop bench learner_state --json [--at 500,2000] [--set learner.max_staleness=2]
                                          [--forget-margin N]  (default: buffer.FORGET_MARGIN)

Bounded means the figures at 2000 are those at 500, not four times them.
"""

from __future__ import annotations

import io
import tempfile
import time
import types

import torch

from rewardloop.bench import common

TOKENIZER = types.SimpleNamespace(pad_token_id=0, eos_token_id=0)
PROMPT = [3, 4, 5]


def _model():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=1, n_embd=32, n_head=4, n_positions=32, vocab_size=16)
    return GPT2LMHeadModel(cfg)


def _traj(tid: str, gid: str, version: int, size: int, reward: float):
    from rewardloop.trajectory import Trajectory

    return Trajectory(
        id=tid,
        group_id=gid,
        prompt_ids=PROMPT,
        completion_ids=[7, 2, 0],
        behavior_logprobs=[-1.0, -1.5, -0.5],
        reward=reward,
        policy_version=version,
        group_size=size,
        worker_id="w0",
    )


def _bytes(obj) -> int:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.tell()


def _sizes(service) -> dict:
    from rewardloop.learner.durability import learner_state

    state = learner_state(service)
    book = {k: v for k, v in state.items() if k not in ("model", "trainer", "rng")}
    return {
        "buffer_seen_ids": len(service.buffer._seen),
        "buffer_closed_groups": len(service.buffer._closed_groups),
        "ledger_decided_ids": len(service.ledger._decided),
        "step_records_in_memory": len(list(service.metrics)),
        "bookkeeping_bytes": _bytes(book),
    }


def measure(
    at: list[int], overrides: list[str], out: str, forget_margin: int | None = None
) -> list[dict]:
    from rewardloop.config import load_config
    from rewardloop.learner.service import LearnerService

    cfg = load_config(
        None,
        ["rollout.group_size=4", "learner.groups_per_step=2", "learner.checkpoint_every_steps=0"]
        + overrides,
    )
    torch.set_num_threads(1)
    service = LearnerService(cfg, _model(), TOKENIZER, resume_dir=f"{out}/resume")
    if forget_margin is not None:
        service.buffer.forget_margin = forget_margin
    lc, g = cfg.learner, cfg.rollout.group_size
    trained_ids: dict[int, str] = {}  # version -> an id trained at it (re-sent later)
    rows, t0 = [], time.perf_counter()
    for step in range(1, max(at) + 1):
        v = service.version
        for k in range(lc.groups_per_step):
            gid = f"s{step}-g{k}"
            for i in range(g):
                service.buffer.add(_traj(f"{gid}-{i}", gid, v, g, float(i % 2)), v)
        old = _traj(f"s{step}-old", f"s{step}-old", v - lc.max_staleness - 1, 1, 0.0)
        for t in [old] + (
            [_traj(trained_ids[v - 3], "x", v - 3, g, 0.0)] if v - 3 in trained_ids else []
        ):
            if service.ledger.decided(t.id):  # as ingest_admit.admit_rows does
                service.ledger.duplicate(t.id, "w0")
                continue
            status, reason = service.buffer.add(t, v)
            if status == "rejected":
                service.ledger.reject(t.id, reason, "w0", v)
            elif status == "duplicate":
                service.ledger.duplicate(t.id, "w0")
        groups = service.buffer.take_groups(lc.groups_per_step, v, timeout_s=1.0)
        trained_ids[v] = groups[0][0].id
        service._record(groups, 0.0)
        if step in at:
            service.checkpoints.save(service)
            found = service.checkpoints.store.latest()
            rows.append(
                {
                    "step": step,
                    "version": service.version,
                    "checkpoint_bytes": int(found[1]["bytes"]) if found else 0,
                    "save_s": service.checkpoints.last["seconds"],
                    **_sizes(service),
                    "accounting": service.ledger.counts(),
                    "elapsed_s": round(time.perf_counter() - t0, 1),
                }
            )
            common.log(f"learner_state: step {step}: {rows[-1]}")
    service.ledger.close()
    return rows


def main(argv: list[str]) -> dict:
    p = common.parser("learner_state", __doc__)
    p.add_argument("--at", default="500,2000", help="steps to measure at (comma-separated)")
    p.add_argument("--set", action="append", default=[], help="config override key=value")
    p.add_argument("--forget-margin", type=int, default=None, help="versions kept past staleness")
    args = p.parse_args(argv)
    at = sorted(int(x) for x in args.at.split(","))
    with tempfile.TemporaryDirectory() as out:
        rows = measure(at, args.set, out, args.forget_margin)
    first, last = rows[0], rows[-1]
    keys = ("checkpoint_bytes", "bookkeeping_bytes", "buffer_seen_ids", "ledger_decided_ids")
    growth = {k: round(last[k] / max(first[k], 1), 3) for k in keys}
    return common.result(
        "learner_state",
        argv,
        [],
        rows=rows,
        growth_last_over_first=growth,
        steps_ratio=last["step"] / first["step"],
    )
