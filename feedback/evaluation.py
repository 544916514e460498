"""Held-out evaluation that measures what the run optimizes, and the task's audience beside it.

`Evaluator(cfg)` samples the held-out prompts once per call and scores the samples with:

- the run's own reward (`metric: reward`) when it is a function, an http or grpc service, or a
  weighted combination of those: a fresh source built from the same config, its calls, items and
  errors counted (`reward_calls`: this evaluation's own, which summary.json sums over the run);
  an error leaves those samples unscored, never stops the run;
- the task's simulated audience (`metric: like_rate` for the news feed, `helpful_rate` for the
  help desk), noise-free, when the run trains on it (`reward.kind: persona`) or as `audience`
  beside the run's own metric;
- nothing when the reward is delayed (people) and the task has no audience: `metric:
  train_reward`, and the run reports its training reward instead.

`evaluate_policy` is the single-source building block the benchmarks use.
"""

from __future__ import annotations

import time
from collections import defaultdict

import torch

from rewardloop.config import RunConfig
from rewardloop.errors import RewardLoopError
from rewardloop.prompts import Prompt, encode_prompt
from rewardloop.sampling import sample_completions
from rewardloop.scoring import ScoreRequest

from .sources.base import RewardSource
from .sources.for_task import audience_source, delayed, only_audience, train_reward_source

TRAIN_REWARD = "train_reward"


def rewards_of(scores: list) -> list[float]:
    """Each score's reward; NaN for an item left unscored (None), which `by_key` skips."""
    return [s.reward if s is not None else float("nan") for s in scores]


class CountedSource:
    """Wraps a reward source for evaluation: counts calls, items, errors and seconds; an error
    leaves the batch unscored instead of raising."""

    def __init__(self, source: RewardSource):
        self.source = source
        self.counts = {"calls": 0, "items": 0, "errors": 0, "seconds": 0.0}

    def values(self, requests: list[ScoreRequest]) -> list[float]:
        t0 = time.perf_counter()
        self.counts["calls"] += 1
        self.counts["items"] += len(requests)
        try:
            scores = self.source.score(requests)
        except RewardLoopError:
            self.counts["errors"] += 1
            scores = [None] * len(requests)
        self.counts["seconds"] = round(self.counts["seconds"] + time.perf_counter() - t0, 4)
        return rewards_of(scores)


@torch.no_grad()
def sample_requests(
    model: torch.nn.Module,
    tokenizer,
    prompts: list[Prompt],
    samples_per_prompt: int,
    max_new_tokens: int,
    temperature: float,
    seed: int,
) -> list[ScoreRequest]:
    """`samples_per_prompt` completions of every prompt, as score requests (model left as found)."""
    was_training = model.training
    model.eval()
    prompt_ids = [encode_prompt(tokenizer, p.text) for p in prompts]  # chat template if any
    samples = sample_completions(
        model,
        prompt_ids,
        samples_per_prompt,
        max_new_tokens,
        eos_id=tokenizer.eos_token_id,
        pad_id=tokenizer.pad_token_id,
        temperature=temperature,
        generator=torch.Generator().manual_seed(seed),
    )
    if was_training:
        model.train()
    return [
        ScoreRequest(
            id=f"eval-{i}",
            prompt=prompts[s.prompt_index].text,
            completion=tokenizer.decode(s.completion_ids, skip_special_tokens=True),
            prompt_key=prompts[s.prompt_index].key,
        )
        for i, s in enumerate(samples)
    ]


def by_key(requests: list[ScoreRequest], values: list[float]) -> dict:
    """{"by_key": {key: mean}, "mean": mean of the keys' means}, unscored (NaN) samples left out."""
    groups: dict[str, list[float]] = defaultdict(list)
    for request, value in zip(requests, values, strict=True):
        if value == value:
            groups[request.prompt_key].append(float(value))
    rates = {k: sum(v) / len(v) for k, v in sorted(groups.items())}
    return {"by_key": rates, "mean": sum(rates.values()) / len(rates) if rates else float("nan")}


def audience_values(source: RewardSource, requests: list[ScoreRequest]) -> tuple[list, bool]:
    """The audience's noise-free expectation when it has one, else its sampled scores."""
    values = source.expected(requests)
    if values is not None:
        return list(values), True
    return rewards_of(source.score(requests)), False


def evaluate_policy(
    model: torch.nn.Module,
    tokenizer,
    prompts: list[Prompt],
    reward: RewardSource,
    samples_per_prompt: int = 16,
    max_new_tokens: int = 24,
    temperature: float = 1.0,
    seed: int = 1234,
) -> dict:
    """One source: {"by_key", "mean", "samples", "noise_free", "examples"}."""
    requests = sample_requests(
        model, tokenizer, prompts, samples_per_prompt, max_new_tokens, temperature, seed
    )
    values, noise_free = audience_values(reward, requests)
    return {
        **by_key(requests, values),
        "samples": len(requests),
        "noise_free": noise_free,
        "examples": {r.prompt_key: r.completion for r in requests[::samples_per_prompt]},
    }


class Evaluator:
    """Held-out evaluation of a run, in whatever process holds it (no Ray needed)."""

    def __init__(self, cfg: RunConfig):
        from rewardloop.modeling import load_policy
        from rewardloop.tasks import get_task

        self.cfg = cfg
        self.task = get_task(cfg.task)
        self.model, self.tokenizer, self.model_path = load_policy(cfg)
        self.prompts = self.task.prompts(cfg).evaluation
        seed = cfg.seed + 99991
        self.audience = audience_source(cfg, seed)
        self.own: CountedSource | None = None
        if only_audience(cfg) or (delayed(cfg) and self.audience is not None):
            self.metric = self.task.metric
        elif delayed(cfg):
            self.metric = TRAIN_REWARD
        else:
            self.metric = "reward"
            self.own = CountedSource(train_reward_source(cfg, seed))

    def __call__(self, model: torch.nn.Module | None = None) -> dict:
        ec, rc = self.cfg.eval, self.cfg.rollout
        requests = sample_requests(
            model or self.model,
            self.tokenizer,
            self.prompts,
            ec.samples_per_prompt,
            rc.max_new_tokens,
            rc.temperature,
            self.cfg.seed + 7,
        )
        out: dict = {"metric": self.metric, "samples": len(requests)}
        if self.own is not None:
            before = dict(self.own.counts)
            out.update(by_key(requests, self.own.values(requests)), noise_free=False)
            # this evaluation's own calls: summary.json sums them over the run's evaluations
            # (also across a resume, whose Evaluator counts from 0 again)
            out["reward_calls"] = {k: round(v - before[k], 4) for k, v in self.own.counts.items()}
        if self.audience is not None:
            values, noise_free = audience_values(self.audience, requests)
            figures = {**by_key(requests, values), "noise_free": noise_free}
            if self.metric == self.task.metric:
                out.update(figures)
            else:
                out["audience"] = {"metric": self.task.metric, **figures}
        if "by_key" not in out:  # delayed reward, no audience: the run reports training reward
            out.update(by_key={}, mean=float("nan"), noise_free=False)
        out["examples"] = {r.prompt_key: r.completion for r in requests[:: ec.samples_per_prompt]}
        return out

    def load(self, state: dict) -> None:
        from rewardloop.lora import load_weights

        load_weights(self.model, state)  # full weights, or a LoRA adapter onto the base

    def close(self) -> None:
        for source in (self.own.source if self.own else None, self.audience):
            if source is not None:
                source.close()
