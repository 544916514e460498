"""Turn buffered trajectories into right-padded training tensors, and score them with a model.

The learner recomputes log-probs of the sampled tokens under its current weights; position
`len(prompt) - 1 + j` of the logits predicts completion token j.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rewardloop.trajectory import Trajectory


@dataclass
class TrainBatch:
    input_ids: torch.Tensor  # [B, L] prompt + completion, right-padded
    attention_mask: torch.Tensor  # [B, L]
    completion_index: torch.Tensor  # [B, T] positions in input_ids of each completion token
    completion_ids: torch.Tensor  # [B, T]
    mask: torch.Tensor  # [B, T] 1 for real completion tokens
    behavior_logprobs: torch.Tensor  # [B, T]
    rewards: torch.Tensor  # [B]
    group_index: torch.Tensor  # [B] long
    versions: torch.Tensor  # [B] long

    def to(self, device: torch.device) -> TrainBatch:
        return TrainBatch(**{k: v.to(device) for k, v in self.__dict__.items()})


def collate(groups: list[list[Trajectory]], pad_id: int) -> TrainBatch:
    """Flatten groups into one batch; group_index says which group each row belongs to."""
    rows = [(g, t) for g, group in enumerate(groups) for t in group]
    width = max(len(t.prompt_ids) + len(t.completion_ids) for _, t in rows)
    comp_width = max(len(t.completion_ids) for _, t in rows)
    b = len(rows)
    input_ids = torch.full((b, width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((b, width), dtype=torch.long)
    completion_index = torch.zeros((b, comp_width), dtype=torch.long)
    completion_ids = torch.full((b, comp_width), pad_id, dtype=torch.long)
    mask = torch.zeros((b, comp_width), dtype=torch.float32)
    behavior = torch.zeros((b, comp_width), dtype=torch.float32)
    for i, (_, t) in enumerate(rows):
        p, c = len(t.prompt_ids), len(t.completion_ids)
        input_ids[i, : p + c] = torch.tensor(t.prompt_ids + t.completion_ids)
        attention_mask[i, : p + c] = 1
        completion_index[i, :c] = torch.arange(p - 1, p - 1 + c)
        completion_ids[i, :c] = torch.tensor(t.completion_ids)
        mask[i, :c] = 1.0
        behavior[i, :c] = torch.tensor(t.behavior_logprobs)
    return TrainBatch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        completion_index=completion_index,
        completion_ids=completion_ids,
        mask=mask,
        behavior_logprobs=behavior,
        rewards=torch.tensor([t.reward for _, t in rows], dtype=torch.float32),
        group_index=torch.tensor([g for g, _ in rows], dtype=torch.long),
        versions=torch.tensor([t.policy_version for _, t in rows], dtype=torch.long),
    )


def completion_logits(
    model: torch.nn.Module, batch: TrainBatch, temperature: float = 1.0
) -> torch.Tensor:
    """Logits [B, T, V] that predict each completion token (temperature applied, float32)."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    index = batch.completion_index[:, :, None].expand(-1, -1, logits.shape[-1])
    return logits.gather(1, index).float() / temperature


def token_logprobs(logits: torch.Tensor, batch: TrainBatch) -> torch.Tensor:
    """log p(completion token) [B, T]; padded positions are 0."""
    logprobs = (
        torch.log_softmax(logits, dim=-1).gather(-1, batch.completion_ids[:, :, None]).squeeze(-1)
    )
    return logprobs * batch.mask
