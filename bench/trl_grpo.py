"""TRL's `GRPOTrainer` on the news-feed task: the peer that `bench e2e` races (offline, CPU).

Same footing as rewardloop and bench/minimal_grpo.py: the cached tiny default model, the same
simulated readers (one Bernoulli like per completion from `PersonaReward`), 3 prompts per step
(one per reader, like the other loops) with a group of 8 completions each, 24 new tokens at
temperature 1 (no top-k/top-p), Adam at the same learning rate (AdamW, weight decay 0),
one optimizer step per generation, token-level PPO-clip loss (TRL's `dapo` = mean over the
batch's tokens), group-std scaled advantages, KL only if asked. A TrainerCallback runs
`feedback.evaluation.evaluate_policy` on the held-out prompts every `--eval-every` steps and
stops training once every reader's expected like rate reaches the target, or at the time cap.

TRL is the optional `bench` extra: `pip install -c constraints.txt -e ".[bench]"`.

    python -m rewardloop.bench.trl_grpo --json [--max-steps 400] [--time-cap-s 600]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import sys
import tempfile
import time


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--max-steps", type=int, default=400)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup-steps", type=int, default=0, help="linear lr warm-up")
    p.add_argument("--kl-coef", type=float, default=0.0, help="TRL's beta (KL to the start model)")
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--eval-samples-per-prompt", type=int, default=7)
    p.add_argument("--target", type=float, default=0.85)
    p.add_argument("--time-cap-s", type=float, default=600.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def balanced_prompts(steps: int, seed: int) -> list[dict]:
    """steps x (one training prompt per reader), each triple in a random reader order."""
    from rewardloop.tasks.newsfeed.prompts import train_prompts
    from rewardloop.tasks.newsfeed.readers import READERS

    rng = random.Random(seed)
    by_reader = {r.name: [p for p in train_prompts() if p.reader == r.name] for r in READERS}
    rows = []
    for _ in range(steps):
        names = [r.name for r in READERS]
        rng.shuffle(names)
        rows += [{"prompt": rng.choice(by_reader[n]).text, "reader": n} for n in names]
    return rows


def main(argv: list[str] | None = None, t_call: float | None = None) -> dict:
    """Train until the target or a cap; returns the result (also printed as JSON)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    t_call = t_call or time.perf_counter()
    args = parse_args(argv)
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from rewardloop.config import ModelConfig, RewardConfig
    from rewardloop.feedback.evaluation import evaluate_policy
    from rewardloop.feedback.sim.personas import PersonaReward
    from rewardloop.modeling import load_policy
    from rewardloop.prompts import Prompt
    from rewardloop.scoring import ScoreRequest
    from rewardloop.tasks.newsfeed.prompts import eval_prompts

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model, tok, _ = load_policy(ModelConfig())
    readers_per_step = 3
    reward = PersonaReward(RewardConfig(), seed=args.seed)
    held_out = [Prompt(p.text, p.reader) for p in eval_prompts()]
    eval_reward = PersonaReward(RewardConfig(), seed=args.seed + 99991)

    def like_reward(prompts, completions, reader, **_) -> list[float]:
        requests = [
            ScoreRequest(str(i), p, c, r)
            for i, (p, c, r) in enumerate(zip(prompts, completions, reader, strict=True))
        ]
        return [s.reward for s in reward.score(requests)]

    def evaluate(m) -> dict[str, float]:
        return evaluate_policy(
            m,
            tok,
            held_out,
            eval_reward,
            args.eval_samples_per_prompt,
            args.max_new_tokens,
            args.temperature,
            seed=args.seed + 7,
        )["by_key"]

    log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else print
    state = {"curve": [], "to_target_s": None, "capped": False}

    class EvalCallback(TrainerCallback):
        def on_step_end(self, _args, st, control, model=None, **kw):
            elapsed = time.perf_counter() - t_call
            if st.global_step % args.eval_every == 0:
                rates = evaluate(model)
                state["curve"].append([st.global_step, {k: round(v, 3) for k, v in rates.items()}])
                log(f"trl step {st.global_step} like rates {rates} t={elapsed:.1f}s")
                if min(rates.values()) >= args.target:
                    state["to_target_s"] = time.perf_counter() - t_call
                    state["cpu_at_target"] = time.process_time()  # CPU seconds (bench/e2e.py)
                    control.should_training_stop = True
            if elapsed > args.time_cap_s:
                state["capped"] = True
                control.should_training_stop = True
            return control

    out_dir = tempfile.mkdtemp(prefix="bench-trl-")
    config = GRPOConfig(
        output_dir=out_dir,
        per_device_train_batch_size=readers_per_step * args.group_size,
        num_generations=args.group_size,
        max_completion_length=args.max_new_tokens,
        temperature=args.temperature,
        top_k=0,
        top_p=1.0,
        learning_rate=args.lr,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=args.warmup_steps,
        weight_decay=0.0,
        max_grad_norm=1.0,
        beta=args.kl_coef,
        epsilon=0.2,
        num_iterations=1,
        loss_type="dapo",
        scale_rewards="group",
        max_steps=args.max_steps,
        logging_steps=10,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,
        seed=args.seed,
        shuffle_dataset=False,
        dataloader_num_workers=0,
        disable_tqdm=True,
        optim="adamw_torch",
    )
    data = Dataset.from_list(balanced_prompts(args.max_steps + 1, args.seed))
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=like_reward,
        args=config,
        train_dataset=data,
        processing_class=tok,
        callbacks=[EvalCallback()],
    )
    start_rates = evaluate(model)
    state["curve"].append([0, {k: round(v, 3) for k, v in start_rates.items()}])
    t_train = time.perf_counter()
    setup_s = t_train - t_call
    try:
        with contextlib.redirect_stdout(sys.stderr):  # Trainer prints its logs to stdout
            trainer.train()
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    seconds = time.perf_counter() - t_call
    result = {
        "steps": int(trainer.state.global_step),
        "seconds": round(seconds, 2),
        "setup_s": round(setup_s, 2),
        "time_to_target_s": None
        if state["to_target_s"] is None
        else round(state["to_target_s"], 2),
        "reached": state["to_target_s"] is not None,
        "cpu_time_at_target_s": state.get("cpu_at_target"),
        "capped": state["capped"],
        "target": args.target,
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "curve": state["curve"],
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
