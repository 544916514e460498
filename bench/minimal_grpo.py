"""A minimal single-process GRPO loop on the news-feed example: the peer baseline.

No Ray, no gRPC, no learner service: one process samples, scores and trains, in that order,
so the figure it prints is what the task costs without any of rewardloop's machinery. It is
also the proof that the task is learnable with the default model.

Each step, for every reader:  pick a random training prompt naming them, sample a group of G
completions (temperature T, KV cache) and record their log-probs; a simulated reader clicks
(Bernoulli) or not. Then, per group, advantage = (r - mean) / (std + eps) and one Adam step
on the PPO-clip loss with the ratio taken against the recorded (behavior) log-probs, averaged
over completion tokens (optionally plus a k3 KL to the start model). Every `eval_every` steps,
the noise-free expected like rate of each reader is measured on held-out prompts; the run stops
when every reader reaches the target.

    python -m rewardloop.bench.minimal_grpo --max-steps 400 --json

Tuning notes (defaults below): Adam lr 5e-4 with a 10-step warm-up reached 0.85 for every reader
in 270-290 steps on 4 of 4 seeds when each evaluation drew fresh samples, 300-330 steps with the
shared, seeded `evaluate_policy` the e2e bench now uses for all three systems; lr >= 7e-4 without KL sometimes collapses (one topic for every
reader, or degenerate text); lr 1e-3 needs --kl-coef 0.05 and is then less predictable
(190-390 steps).
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import time

import torch

from rewardloop.config import ModelConfig, RewardConfig
from rewardloop.feedback.evaluation import evaluate_policy
from rewardloop.feedback.sim.personas import PersonaReward
from rewardloop.feedback.sources.base import ScoreRequest
from rewardloop.modeling import load_policy
from rewardloop.prompts import Prompt
from rewardloop.tasks.newsfeed.prompts import eval_prompts, train_prompts
from rewardloop.tasks.newsfeed.readers import READERS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--max-steps", type=int, default=400)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--clip-eps", type=float, default=0.2)
    p.add_argument("--epochs", type=int, default=1, help="optimizer passes over each batch")
    p.add_argument("--warmup-steps", type=int, default=10, help="linear lr warm-up")
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--kl-coef", type=float, default=0.0, help="k3 KL to the frozen start model")
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--eval-samples", type=int, default=48, help="per reader, >= 32")
    p.add_argument("--target", type=float, default=0.85)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--cache-dir", default=ModelConfig.cache_dir)
    p.add_argument("--pretrain-seconds", type=float, default=ModelConfig.pretrain_seconds)
    p.add_argument("--json", action="store_true", help="print only the JSON result on stdout")
    p.add_argument("--verbose", action="store_true", help="log topics of eval samples")
    return p.parse_args(argv)


@torch.no_grad()
def sample(model, prompts: list[list[int]], n: int, max_new: int, temp: float, eos: int, pad: int):
    """n completions per prompt. Returns prompt ids/mask (left-padded), completion ids/mask, logps."""
    device = next(model.parameters()).device
    rows = [p for p in prompts for _ in range(n)]
    width = max(len(r) for r in rows)
    p_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
    p_mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
    pos = (p_mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=p_ids, attention_mask=p_mask, position_ids=pos, use_cache=True)
    next_pos, mask = pos[:, -1:] + 1, p_mask
    alive = torch.ones(len(rows), dtype=torch.bool, device=device)
    toks, logps, masks = [], [], []
    for _ in range(max_new):
        logp = torch.log_softmax(out.logits[:, -1, :].float() / temp, dim=-1)
        tok = torch.multinomial(logp.exp(), 1).squeeze(-1)
        tok = torch.where(alive, tok, torch.full_like(tok, pad))
        toks.append(tok)
        logps.append(logp.gather(-1, tok[:, None]).squeeze(-1))
        masks.append(alive.long())
        alive = alive & (tok != eos)
        if not bool(alive.any()):
            break
        mask = torch.cat([mask, alive.long()[:, None]], dim=1)
        out = model(
            input_ids=tok[:, None],
            attention_mask=mask,
            position_ids=next_pos,
            cache=out.cache,
            use_cache=True,
        )
        next_pos = next_pos + 1
    return p_ids, p_mask, torch.stack(toks, 1), torch.stack(masks, 1), torch.stack(logps, 1)


def token_logprobs(model, p_ids, p_mask, c_ids, c_mask, temp: float) -> torch.Tensor:
    """log p(completion token) under the current weights, one per completion position."""
    ids = torch.cat([p_ids, c_ids], dim=1)
    mask = torch.cat([p_mask, c_mask], dim=1)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
    logits = logits[:, p_ids.shape[1] - 1 : -1, :].float() / temp
    return torch.log_softmax(logits, dim=-1).gather(-1, c_ids[:, :, None]).squeeze(-1)


def decode(tok, c_ids, c_mask) -> list[str]:
    eos = tok.eos_token_id
    out = []
    for ids, m in zip(c_ids.tolist(), c_mask.tolist(), strict=True):
        row = [t for t, keep in zip(ids, m, strict=True) if keep and t != eos]
        out.append(tok.decode(row))
    return out


def evaluate(model, tok, reward: PersonaReward, args) -> dict[str, float]:
    """Noise-free expected like rate per reader on held-out prompts: the very evaluation
    rewardloop's driver and bench/trl_grpo.py run (`evaluate_policy`, its sampling seeded the
    same way at every evaluation), so the three systems' "reached the target" are one measure."""
    held_out = [Prompt(p.text, p.reader) for p in eval_prompts()]
    per_prompt = -(-args.eval_samples // sum(p.key == held_out[0].key for p in held_out))
    result = evaluate_policy(
        model,
        tok,
        held_out,
        reward,
        per_prompt,
        args.max_new_tokens,
        args.temperature,
        seed=args.seed + 7,
    )
    if args.verbose:
        for key, text in result["examples"].items():
            print(f"  {key}: e.g. {text!r}", file=sys.stderr)
    return result["by_key"]


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    cfg = ModelConfig(cache_dir=args.cache_dir, pretrain_seconds=args.pretrain_seconds)
    model, tok, _ = load_policy(cfg)
    model.to(args.device).train()
    ref = copy.deepcopy(model).eval().requires_grad_(False) if args.kl_coef > 0 else None
    reward = PersonaReward(RewardConfig(), seed=args.seed)
    eval_reward = PersonaReward(RewardConfig(), seed=args.seed + 99991)  # as rewardloop's
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    warmup = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / (args.warmup_steps + 1))
    )
    by_reader = {r.name: [p for p in train_prompts() if p.reader == r.name] for r in READERS}
    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print

    start = time.perf_counter()
    start_rates = evaluate(model, tok, eval_reward, args)
    log(f"step 0 like rates {fmt(start_rates)}")
    end_rates, to_target, curve, step = start_rates, None, [(0, start_rates)], 0
    cpu_at_target = None
    for step in range(1, args.max_steps + 1):
        prompts = [rng.choice(by_reader[r.name]) for r in READERS]
        ids = [tok(p.text, add_special_tokens=False)["input_ids"] for p in prompts]
        p_ids, p_mask, c_ids, c_mask, old_lp = sample(
            model,
            ids,
            args.group_size,
            args.max_new_tokens,
            args.temperature,
            tok.eos_token_id,
            tok.pad_token_id,
        )
        texts = decode(tok, c_ids, c_mask)
        keys = [p.reader for p in prompts for _ in range(args.group_size)]
        scores = reward.score(
            [
                ScoreRequest(str(i), "", t, k)
                for i, (t, k) in enumerate(zip(texts, keys, strict=True))
            ]
        )
        r = torch.tensor([s.reward for s in scores], device=p_ids.device).view(len(prompts), -1)
        adv = ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + 1e-4)).view(-1, 1)
        m = c_mask.float()
        if ref is not None:
            with torch.no_grad():
                ref_lp = token_logprobs(ref, p_ids, p_mask, c_ids, c_mask, args.temperature)
        for _ in range(args.epochs):
            new_lp = token_logprobs(model, p_ids, p_mask, c_ids, c_mask, args.temperature)
            ratio = torch.exp(new_lp - old_lp)
            clipped = ratio.clamp(1 - args.clip_eps, 1 + args.clip_eps)
            per_token = -torch.min(ratio * adv, clipped * adv)
            if ref is not None:
                d = ref_lp - new_lp
                per_token = per_token + args.kl_coef * (torch.exp(d) - d - 1)
            loss = (per_token * m).sum() / m.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if args.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
            opt.step()
        warmup.step()
        if step % args.eval_every == 0 or step == args.max_steps:
            end_rates = evaluate(model, tok, eval_reward, args)
            curve.append((step, end_rates))
            log(
                f"step {step} reward {r.mean().item():.2f} like rates {fmt(end_rates)} "
                f"t={time.perf_counter() - start:.1f}s"
            )
            if min(end_rates.values()) >= args.target:
                to_target = time.perf_counter() - start
                cpu_at_target = time.process_time()  # this process's CPU seconds (bench/e2e.py)
                break
    result = {
        "steps": step,
        "seconds": round(time.perf_counter() - start, 2),
        "time_to_target_s": None if to_target is None else round(to_target, 2),
        "cpu_time_at_target_s": cpu_at_target,
        "target": args.target,
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "cache_dir")},
        "readers": {
            name: {
                "like_rate_start": round(start_rates[name], 4),
                "like_rate_end": round(end_rates[name], 4),
            }
            for name in start_rates
        },
        "curve": [[s, {k: round(v, 3) for k, v in rates.items()}] for s, rates in curve],
    }
    print(json.dumps(result, indent=None if args.json else 2))
    return result


def fmt(rates: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.2f}" for k, v in rates.items())


if __name__ == "__main__":
    main()
