"""`bench memory`: the learner's peak memory per trained token, against TRL and our old path.

Tiny GPT-2-shaped models (random init, 2 layers, hidden 64) with a 32k and a 150k vocabulary
are built locally from a config, and one training step runs on the same synthetic batch
(`--seqs` sequences x `--tokens` completion tokens after a `--prompt`-token prompt):

- ours:     `Trainer.step` with the selective, chunked log-softmax (`learner.logprob_chunk_rows`)
            and, if asked, `--set learner.micro_batch_size=...` / gradient checkpointing;
- old:      the same step with `learner.logprob_chunk_rows=0` (the full float32 [B, T, V]
            log-softmax, the learner before issue 14);
- trl:      TRL's `GRPOTrainer` (the `bench` extra), one step with `max_steps=1`, the same
            model, batch size and completion length (its step includes generating the batch;
            generation of a tiny model is a small share of the peak), float32 and no
            checkpointing like ours (TRL's own defaults turn on bf16 and checkpointing).

Each figure comes from a fresh subprocess: the peak resident set (VmHWM) is reset just before
the step (`/proc/self/clear_refs`), so the figure is the step's peak RSS minus the RSS before
it, divided by the completion tokens trained. Kinds run interleaved (ours, old, trl, ours, ...)
`--repeats` times; medians and spreads are reported, ratios are ours / baseline (< 1 = less).

    rewardloop bench memory --json [--vocabs 32000,150000] [--seqs 8] [--tokens 128]
                                   [--kinds ours,old,trl] [--repeats 3] [--set learner.k=v]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from rewardloop.bench import common

KINDS = ("ours", "old", "trl")


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_since_reset() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)


def build_model(vocab: int, positions: int):
    """A tiny GPT-2-shaped model with `vocab` tokens, from a config (nothing downloaded)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=vocab,
        n_positions=positions,
        n_embd=64,
        n_layer=2,
        n_head=4,
        bos_token_id=0,
        eos_token_id=0,
    )
    return GPT2LMHeadModel(cfg)


def synthetic_groups(vocab: int, seqs: int, prompt: int, tokens: int, group_size: int = 4):
    """`seqs` trajectories in groups of `group_size`, tokens drawn with a fixed seed."""
    import torch

    from rewardloop.trajectory import Trajectory

    g = torch.Generator().manual_seed(1)
    groups = []
    for start in range(0, seqs, group_size):
        p = torch.randint(1, vocab, (prompt,), generator=g).tolist()
        group = []
        for i in range(start, min(seqs, start + group_size)):
            c = torch.randint(1, vocab, (tokens,), generator=g).tolist()
            group.append(
                Trajectory(
                    id=f"t{i}",
                    group_id=f"g{start}",
                    prompt_ids=p,
                    completion_ids=c,
                    behavior_logprobs=[-10.0] * tokens,
                    reward=float(i % 2),
                    policy_version=0,
                    group_size=group_size,
                )
            )
        groups.append(group)
    return groups


def _ours(args: dict) -> dict:
    import torch

    from rewardloop.config import load_config
    from rewardloop.learner.trainer import Trainer

    overrides = list(args["overrides"])
    if args["kind"] == "old":
        overrides.append("learner.logprob_chunk_rows=0")
    cfg = load_config(None, overrides).learner
    model = build_model(args["vocab"], 4 * (args["prompt"] + args["tokens"]))
    trainer = Trainer(model, cfg, pad_id=0)
    groups = synthetic_groups(args["vocab"], args["seqs"], args["prompt"], args["tokens"])
    torch.set_num_threads(1)
    before = _rss()
    _reset_peak()
    metrics = trainer.step(groups)
    return {
        "before": before,
        "peak": _peak_since_reset(),
        "tokens": args["seqs"] * args["tokens"],
        "skipped": metrics["skipped"],
    }


def _tokenizer(vocab: int):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {f"t{i}": i for i in range(vocab)}
    tok = Tokenizer(models.WordLevel(words, unk_token="t1"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="t0", pad_token="t0", unk_token="t1"
    )


def _trl(args: dict) -> dict:
    import contextlib
    import tempfile

    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    torch.set_num_threads(1)
    vocab, seqs, tokens = args["vocab"], args["seqs"], args["tokens"]
    model = build_model(vocab, 4 * (args["prompt"] + tokens))
    model.generation_config.eos_token_id = None  # every completion runs to `tokens`
    groups = synthetic_groups(vocab, seqs, args["prompt"], tokens)
    prompts = [" ".join(f"t{i}" for i in g[0].prompt_ids) for g in groups]
    state: dict = {}

    class Peak(TrainerCallback):
        def on_step_begin(self, *_a, **_k):
            state["before"] = _rss()
            _reset_peak()

        def on_step_end(self, *_a, **_k):
            state["peak"] = _peak_since_reset()

    out = tempfile.mkdtemp(prefix="bench-memory-trl-")
    config = GRPOConfig(
        output_dir=out,
        per_device_train_batch_size=seqs,
        num_generations=4,
        max_completion_length=tokens,
        learning_rate=5e-4,
        beta=0.0,
        loss_type="dapo",
        max_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=False,  # TRL's defaults are bf16 and checkpointing on; ours: float32, none
        gradient_checkpointing=False,
        optim="adamw_torch",
        weight_decay=0.0,
        disable_tqdm=True,
        logging_steps=1,
        dataloader_num_workers=0,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=lambda completions, **_: [float(len(c) % 2) for c in completions],
        args=config,
        train_dataset=Dataset.from_list([{"prompt": p} for p in prompts] * seqs),
        processing_class=_tokenizer(vocab),
        callbacks=[Peak()],
    )
    with contextlib.redirect_stdout(sys.stderr):
        trainer.train()
    return {"before": state["before"], "peak": state["peak"], "tokens": seqs * tokens}


def child(argv: list[str]) -> None:
    """One measurement in this fresh process; prints its JSON on stdout."""
    args = json.loads(argv[0])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = _trl(args) if args["kind"] == "trl" else _ours(args)
    print(json.dumps(result))


def measure(kind: str, vocab: int, a, overrides: list[str]) -> dict:
    spec = dict(kind=kind, vocab=vocab, seqs=a.seqs, prompt=a.prompt, tokens=a.tokens)
    spec["overrides"] = overrides
    cmd = [sys.executable, "-m", "rewardloop.bench.memory", "--child", json.dumps(spec)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if done.returncode:
        tail = done.stderr.strip().splitlines()[-1:] or ["?"]
        raise RuntimeError(f"{kind} vocab {vocab}: {tail[0]}")
    r = json.loads(done.stdout.strip().splitlines()[-1])
    r["bytes_per_token"] = (r["peak"] - r["before"]) / r["tokens"]
    return r


def main(argv: list[str]) -> dict:
    p = common.parser("memory", __doc__.split("\n")[0])
    p.add_argument("--vocabs", default="32000,150000")
    p.add_argument("--seqs", type=int, default=8)
    p.add_argument("--prompt", type=int, default=16)
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--kinds", default=",".join(KINDS), help="of ours,old,trl (ours first)")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    a = p.parse_args(argv)
    kinds = [k for k in a.kinds.split(",") if k]
    if "trl" in kinds:
        try:
            import trl  # noqa: F401
        except ImportError:
            common.log("memory: TRL is not installed (the bench extra); measuring ours vs old")
            kinds.remove("trl")
    figures, comparisons = {}, []
    for vocab in (int(v) for v in a.vocabs.split(",")):
        runs: dict[str, list[float]] = {k: [] for k in kinds}
        for rep in range(a.repeats):  # interleaved: ours, old, trl, ours, old, trl, ...
            for kind in kinds:
                r = measure(kind, vocab, a, a.overrides)
                runs[kind].append(r["bytes_per_token"])
                common.log(f"memory vocab {vocab} {kind} #{rep}: {r['bytes_per_token']:.0f} B/tok")
        figures[str(vocab)] = {k: common.spread(v) for k, v in runs.items()}
        for base in (k for k in kinds if k != "ours"):
            comparisons.append(
                common.comparison(
                    f"peak step memory per trained token, vocab {vocab}: ours vs {base}",
                    ("rewardloop Trainer.step", common.median(runs["ours"]), "bytes/token"),
                    (base, common.median(runs[base]), "bytes/token"),
                    ratio_max=1.0,
                )
            )
    return common.result(
        "memory",
        argv,
        comparisons,
        figures=figures,
        settings={"seqs": a.seqs, "prompt": a.prompt, "tokens": a.tokens, "set": a.overrides},
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
    else:
        common.emit(main(sys.argv[1:]), "--json" in sys.argv)
