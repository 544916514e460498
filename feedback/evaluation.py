"""Score a policy on held-out prompts, so two runs or two algorithms compare on one footing.

A reward source that knows its expectation (a persona's own like probability) is used
noise-free; any other source is asked to score the samples.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from rewardloop.prompts import Prompt
from rewardloop.sampling import sample_completions
from rewardloop.scoring import ScoreRequest

from .base import RewardSource


@torch.no_grad()
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
    """Returns {"by_key": {key: mean reward}, "mean": float, "samples": int, "noise_free": bool}."""
    was_training = model.training
    model.eval()
    prompt_ids = [tokenizer(p.text, add_special_tokens=False)["input_ids"] for p in prompts]
    generator = torch.Generator().manual_seed(seed)
    samples = sample_completions(
        model,
        prompt_ids,
        samples_per_prompt,
        max_new_tokens,
        eos_id=tokenizer.eos_token_id,
        pad_id=tokenizer.pad_token_id,
        temperature=temperature,
        generator=generator,
    )
    requests = [
        ScoreRequest(
            id=f"eval-{i}",
            prompt=prompts[s.prompt_index].text,
            completion=tokenizer.decode(s.completion_ids, skip_special_tokens=True),
            prompt_key=prompts[s.prompt_index].key,
        )
        for i, s in enumerate(samples)
    ]
    values = reward.expected(requests)
    noise_free = values is not None
    if values is None:
        scores = reward.score(requests)
        values = [s.reward if s is not None else float("nan") for s in scores]
    by_key: dict[str, list[float]] = defaultdict(list)
    for request, value in zip(requests, values, strict=True):
        if value == value:  # skip NaN (unscored)
            by_key[request.prompt_key].append(float(value))
    if was_training:
        model.train()
    rates = {k: sum(v) / len(v) for k, v in sorted(by_key.items())}
    return {
        "by_key": rates,
        "mean": sum(rates.values()) / max(1, len(rates)),
        "samples": len(samples),
        "noise_free": noise_free,
        "examples": {r.prompt_key: r.completion for r in requests[::samples_per_prompt]},
    }
