"""Turn buffered trajectories into right-padded training tensors, and score them with a model.

The learner recomputes log-probs of the sampled tokens under its current weights; position
`len(prompt) - 1 + j` of the logits predicts completion token j. `completion_logprobs` does it
without float32 [B, T, V] copies (a selective, chunked log-softmax, with the output layer fused
in for the usual decoder models); `split_rows` cuts a batch into micro-batches.
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


def split_rows(batch: TrainBatch, rows: int) -> list[TrainBatch]:
    """The batch as consecutive micro-batches of at most `rows` sequences (0 = the whole batch).

    Each keeps the full batch's padded widths, so per-token tensors line up when concatenated.
    """
    size = batch.input_ids.shape[0]
    if rows <= 0 or rows >= size:
        return [batch]
    return [
        TrainBatch(**{k: v[start : start + rows] for k, v in batch.__dict__.items()})
        for start in range(0, size, rows)
    ]


_F32_MIN = torch.finfo(torch.float32).min


def _scaled(z: torch.Tensor, tau: float) -> torch.Tensor:
    """z / tau in place, -inf (banned tokens) clamped to the finite minimum: p = 0 there."""
    return z.div_(tau).clamp_(min=_F32_MIN)


def _chunk_stats(z: torch.Tensor, tokens: torch.Tensor):
    """(lse, log p_y, H) of scaled logits z [n, V]: log p_y = z_y - lse, H = lse - sum p z."""
    lse = torch.logsumexp(z, dim=-1)
    logprob = z.gather(-1, tokens[:, None]).squeeze(-1) - lse
    p = (z - lse[:, None]).exp_()
    return lse, logprob, lse - torch.einsum("nv,nv->n", p, z)


def _chunk_grad(z, tokens, lse, entropy, g_lp, g_h, tau: float) -> torch.Tensor:
    """d(g_lp . log p_y + g_h . H) / d raw logits, computed in place on scaled z [n, V]:
    d log p_y / dz = onehot_y - p,  d H / dz = -p * (log p + H),  then / tau."""
    p = (z - lse[:, None]).exp_()
    if g_h is not None:  # -g_H * p * (z - lse + H)
        z.sub_((lse - entropy)[:, None]).mul_(p).mul_(-g_h[:, None])
    else:
        z.zero_()
    if g_lp is not None:  # + g_lp * (onehot_y - p)
        z.sub_(p.mul_(g_lp[:, None])).scatter_add_(-1, tokens[:, None], g_lp[:, None])
    return z.div_(tau)


def _part(g: torch.Tensor | None, part: slice) -> torch.Tensor | None:
    return None if g is None else g[part]


class _SelectiveLogSoftmax(torch.autograd.Function):
    """log p(token) and the entropy H of softmax(logits / temperature) for chosen rows.

    Forward and backward run over `chunk` rows at a time in float32 with two chunk-sized
    temporaries, so no float32 [N, V] copy is alive beyond one chunk; only the logits (the
    model's output, held anyway), the chosen rows, the tokens and per-row values are saved.
    """

    @staticmethod
    def forward(ctx, logits, rows, tokens, temperature, chunk):
        lse = logits.new_empty(rows.shape, dtype=torch.float32)
        logprob, entropy = torch.empty_like(lse), torch.empty_like(lse)
        for s in range(0, rows.shape[0], chunk):
            part = slice(s, s + chunk)
            z = _scaled(logits.index_select(0, rows[part]).float(), temperature)
            lse[part], logprob[part], entropy[part] = _chunk_stats(z, tokens[part])
        ctx.save_for_backward(logits, rows, tokens, lse, entropy)
        ctx.temperature, ctx.chunk = temperature, chunk
        ctx.set_materialize_grads(False)  # an unused entropy costs no backward work
        return logprob, entropy

    @staticmethod
    def backward(ctx, grad_logprob, grad_entropy):
        logits, rows, tokens, lse, entropy = ctx.saved_tensors
        tau, chunk = ctx.temperature, ctx.chunk
        grad = torch.zeros_like(logits)
        for s in range(0, rows.shape[0], chunk):
            part = slice(s, s + chunk)
            z = _scaled(logits.index_select(0, rows[part]).float(), tau)
            g = _chunk_grad(
                z, tokens[part], lse[part], entropy[part],
                _part(grad_logprob, part), _part(grad_entropy, part), tau,
            )  # fmt: skip
            grad.index_add_(0, rows[part], g.to(grad.dtype))
        return grad, None, None, None, None


class _FusedHeadLogSoftmax(torch.autograd.Function):
    """The same two values from the last hidden states and the output layer, never building
    the [N, V] logits: each chunk's logits h W^T + b are computed in float32, used and freed in
    forward, and recomputed in backward (grad h = g W, grad W = g^T h, grad b = sum g)."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, rows, tokens, temperature, chunk):
        lse = hidden.new_empty(rows.shape, dtype=torch.float32)
        logprob, entropy = torch.empty_like(lse), torch.empty_like(lse)
        w = weight.to(hidden.dtype)  # once, not per chunk
        for s in range(0, rows.shape[0], chunk):
            part = slice(s, s + chunk)
            z = _scaled(_FusedHeadLogSoftmax._logits(hidden, w, bias, rows[part]), temperature)
            lse[part], logprob[part], entropy[part] = _chunk_stats(z, tokens[part])
        ctx.save_for_backward(hidden, weight, bias, rows, tokens, lse, entropy)
        ctx.temperature, ctx.chunk = temperature, chunk
        ctx.set_materialize_grads(False)
        return logprob, entropy

    @staticmethod
    def _logits(hidden, weight, bias, rows):
        """One chunk's logits in float32; `weight` is already in the hidden states' dtype (the
        matmul as the model's own output layer does it under autocast)."""
        z = hidden.index_select(0, rows) @ weight.T
        return z.float() if bias is None else z.float().add_(bias.float())

    @staticmethod
    def backward(ctx, grad_logprob, grad_entropy):
        hidden, weight, bias, rows, tokens, lse, entropy = ctx.saved_tensors
        tau, chunk = ctx.temperature, ctx.chunk
        grad_h = torch.zeros(hidden.shape, dtype=torch.float32, device=hidden.device)
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        grad_b = None if bias is None else torch.zeros_like(bias, dtype=torch.float32)
        if grad_logprob is not None or grad_entropy is not None:
            w, w32 = weight.to(hidden.dtype), weight.float()
            for s in range(0, rows.shape[0], chunk):
                part = slice(s, s + chunk)
                z = _scaled(_FusedHeadLogSoftmax._logits(hidden, w, bias, rows[part]), tau)
                g = _chunk_grad(
                    z, tokens[part], lse[part], entropy[part],
                    _part(grad_logprob, part), _part(grad_entropy, part), tau,
                )  # fmt: skip
                h = hidden.index_select(0, rows[part]).float()
                grad_h.index_add_(0, rows[part], g @ w32)
                grad_w.addmm_(g.T, h)
                if grad_b is not None:
                    grad_b += g.sum(0)
        grad_b = None if grad_b is None else grad_b.to(bias.dtype)
        return grad_h.to(hidden.dtype), grad_w.to(weight.dtype), grad_b, None, None, None, None


FUSED_HEAD_MODELS = ("gpt2", "llama", "mistral", "qwen2", "qwen3")
"""Model types whose logits are exactly `lm_head(base_model(...).last_hidden_state)`."""


def _fused_head(model: torch.nn.Module):
    """The model's output Linear when its logits are that Linear of the base model's output."""
    head = getattr(model, "get_output_embeddings", lambda: None)()
    config = getattr(model, "config", None)
    if not isinstance(head, torch.nn.Linear) or config is None:
        return None
    if getattr(config, "model_type", "") not in FUSED_HEAD_MODELS:
        return None
    return head if getattr(model, "base_model", model) is not model else None


def completion_logprobs(
    model: torch.nn.Module,
    batch: TrainBatch,
    temperature: float = 1.0,
    chunk_rows: int = 128,
    entropy_grad: bool = False,
    fused_head: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p(completion token), entropy of the next-token distribution), both [B, T] float32.

    A selective log-softmax: per real completion token, logsumexp over its logits row in chunks
    of `chunk_rows` rows and the sampled token's logit, straight from the model's output (no
    [B, T, V] gather, no float32 copy of it). With `fused_head` and a model in
    `FUSED_HEAD_MODELS`, the output layer itself runs chunk by chunk on the last hidden states,
    so not even the model's [B, L, V] logits exist. Padded positions are 0 in both.
    `chunk_rows = 0` takes the old path: `completion_logits` + `token_logprobs` (a float32
    [B, T, V] copy), with the entropy differentiable only when `entropy_grad`.
    """
    if chunk_rows <= 0:
        logits = completion_logits(model, batch, temperature)
        with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
            z = logits if entropy_grad else logits.detach()
            parts = []
            for chunk in z.reshape(-1, z.shape[-1]).split(1024):  # as entropy_from_logits
                logp = torch.log_softmax(chunk, dim=-1).clamp(min=torch.finfo(z.dtype).min)
                parts.append(-(logp.exp() * logp).sum(-1))
            entropy = torch.cat(parts).reshape(batch.mask.shape) * batch.mask
        return token_logprobs(logits, batch), entropy
    inputs = dict(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
    head = _fused_head(model) if fused_head else None
    if head is not None:
        out = model.base_model(**inputs).last_hidden_state
    else:
        out = model(**inputs).logits
    b, width, features = out.shape
    real = batch.mask.bool().reshape(-1)
    offsets = torch.arange(b, device=out.device)[:, None] * width
    rows = (batch.completion_index + offsets).reshape(-1)[real]
    tokens = batch.completion_ids.reshape(-1)[real]
    flat, tau = out.reshape(b * width, features), float(temperature)
    # dtypes are explicit inside (the head in the hidden states' dtype, softmax in float32), the
    # same in forward and backward, which autocast does not reach
    with torch.autocast(out.device.type, enabled=False):
        if head is not None:
            logprob, entropy = _FusedHeadLogSoftmax.apply(
                flat, head.weight, head.bias, rows, tokens, tau, chunk_rows
            )
        else:
            logprob, entropy = _SelectiveLogSoftmax.apply(flat, rows, tokens, tau, chunk_rows)
    shape = batch.mask.shape
    zeros = torch.zeros(real.shape, dtype=torch.float32, device=out.device)
    return (
        zeros.masked_scatter(real, logprob).reshape(shape),
        zeros.masked_scatter(real, entropy).reshape(shape),
    )
