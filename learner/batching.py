"""Turn buffered trajectories into right-padded training tensors, and score them with a model.

The learner recomputes log-probs of the sampled tokens under its current weights; position
`len(prompt) - 1 + j` of the logits predicts completion token j.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
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
    """Flatten groups into one batch; group_index says which group each row belongs to.

    Built with a handful of numpy calls over the concatenated token arrays (no per-token
    Python): a boolean "real token" mask per row, filled in row-major order.
    """
    rows = [t for group in groups for t in group]
    group_index = [g for g, group in enumerate(groups) for _ in group]
    p_len = np.fromiter((len(t.prompt_ids) for t in rows), np.int64, len(rows))
    c_len = np.fromiter((len(t.completion_ids) for t in rows), np.int64, len(rows))
    lengths = p_len + c_len
    width, comp_width = int(lengths.max()), int(c_len.max())
    real = np.arange(width) < lengths[:, None]  # [B, L] prompt + completion tokens
    comp = np.arange(comp_width) < c_len[:, None]  # [B, T] completion tokens
    input_ids = np.full(real.shape, pad_id, dtype=np.int64)
    input_ids[real] = np.concatenate([a for t in rows for a in (t.prompt_ids, t.completion_ids)])
    completion_ids = np.full(comp.shape, pad_id, dtype=np.int64)
    completion_ids[comp] = np.concatenate([t.completion_ids for t in rows])
    behavior = np.zeros(comp.shape, dtype=np.float32)
    behavior[comp] = np.concatenate([t.behavior_logprobs for t in rows])
    # Completion token j of a row sits at position len(prompt) + j; its logits at one before.
    completion_index = np.where(comp, p_len[:, None] - 1 + np.arange(comp_width), 0)
    return TrainBatch(
        input_ids=torch.from_numpy(input_ids),
        attention_mask=torch.from_numpy(real.astype(np.int64)),
        completion_index=torch.from_numpy(completion_index),
        completion_ids=torch.from_numpy(completion_ids),
        mask=torch.from_numpy(comp.astype(np.float32)),
        behavior_logprobs=torch.from_numpy(behavior),
        rewards=torch.tensor([t.reward for t in rows], dtype=torch.float32),
        group_index=torch.tensor(group_index, dtype=torch.long),
        versions=torch.tensor([t.policy_version for t in rows], dtype=torch.long),
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
