"""The policy update: one optimizer step on a list of complete groups.

groups     <- those with a reward spread       # learner.filter_constant_groups (dynamic sampling)
batch      <- collate(groups)
algo       <- ALGORITHM_TABLE[learner.algorithm]        # once, in __init__ (algorithms.py)
A          <- algo.advantages(rewards, groups)          # grpo | rloo | reinforce | ppo, whole batch
mask       <- 0 on cut-off completions              # learner.mask_truncated (overlong filtering)
for each micro-batch (learner.micro_batch_size rows; 0 = all), gradients accumulating:
  log pi, H <- selective log-softmax of policy(prompt + completion)   # chunked, no [B, T, V] f32
every row:  loss = -clip-objective(ratio = pi / pi_behavior, A)       (algo.loss)
rloo, reinforce with rloo_loss / reinforce_loss = is:
            loss = -A * log pi * min(pi / pi_behavior, cap)              (truncated IS)
loss      += kl_coef * KL(pi || pi_ref) - entropy_coef * H(pi)   # pi_ref: a frozen copy, or
                                                 # with LoRA the base itself, adapter off
loss      -= first_token_entropy_coef * mean_rows H(pi at the first completion token)
  backward(loss x the micro-batch's share of the whole batch's token / sequence mean)
skip the step if the loss or the gradient norm is not finite (counted, with the reason)
clip the gradient norm, Adam step          # repeated for algo.epochs(cfg) passes (ppo)
schedule step, version += 1
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time

import torch

from rewardloop import lora
from rewardloop.config import LearnerConfig
from rewardloop.errors import ConfigError
from rewardloop.learner import advantages as adv
from rewardloop.learner import losses
from rewardloop.learner.algorithms import LossResult, algorithm_for
from rewardloop.learner.batching import TrainBatch, collate, completion_logprobs, split_rows
from rewardloop.learner.schedule import make_scheduler
from rewardloop.trajectory import Trajectory


def enable_checkpointing(model: torch.nn.Module) -> None:
    """Turn on HF gradient checkpointing so that it really runs, without changing the maths.

    HF checkpoints a layer only `if self.gradient_checkpointing and self.training`, and the
    learner keeps its model in eval() for log-probs that match the workers'. So the model goes
    to train() with every dropout at 0 (nn.Dropout modules and float `*dropout` attributes that
    attention reads in training mode): train() then computes exactly what eval() does.
    """
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise ConfigError(
            f"learner.gradient_checkpointing: {type(model).__name__} does not support it; "
            "set learner.gradient_checkpointing=false"
        )
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # the name from transformers 5.x on
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd):
            module.p = 0.0
        for name in ("attention_dropout", "dropout", "attn_dropout"):
            if isinstance(getattr(module, name, None), float):
                setattr(module, name, 0.0)
    model.train()


class Trainer:
    """Owns the policy, its optimizer and the algorithm; knows nothing about transport."""

    def __init__(
        self,
        model: torch.nn.Module,
        cfg: LearnerConfig,
        pad_id: int,
        temperature: float = 1.0,
        device: torch.device | str = "cpu",
        start_version: int = 0,
        compute_dtype: torch.dtype = torch.float32,
        eos_id: int | None = None,
        max_new_tokens: int = 0,
    ):
        if cfg.aggregation == "constant" and not cfg.norm_tokens and max_new_tokens:
            cfg = dataclasses.replace(cfg, norm_tokens=max_new_tokens)  # Dr. GRPO's budget
        if cfg.mask_truncated and eos_id is None:
            raise ConfigError("learner.mask_truncated: needs the tokenizer's eos id (eos_id)")
        self.eos_id = eos_id
        self.cfg = cfg
        self.algorithm = algorithm_for(cfg.algorithm)
        self.pad_id = pad_id
        self.temperature = temperature
        self.device = torch.device(device)
        # bf16 runs the forward/backward under autocast; parameters and Adam state stay float32
        # (master weights), so small updates are not lost to bf16 rounding.
        self.autocast = compute_dtype != torch.float32
        self.compute_dtype = compute_dtype
        if self.autocast and self.device.type != "cuda":
            raise ValueError(f"compute_dtype: {compute_dtype} autocast needs a cuda device")
        # eval(): dropout off, so learner log-probs match the workers' behavior log-probs exactly.
        self.model = model.to(self.device).eval()
        # the trainable parameters only: with LoRA the adapter's, so Adam keeps no base state
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(trainable, lr=cfg.lr)
        self.scheduler = make_scheduler(
            self.optimizer, cfg.lr_schedule, cfg.warmup_steps, cfg.max_steps
        )
        # what runs forward for log-probs: the HF model (inside a PeftModel, with its adapter)
        self.scorer = lora.scoring_module(self.model)
        # the KL reference: with LoRA the base itself, adapter disabled (no copy of the model)
        self.lora = lora.is_peft(self.model)
        self.reference = self._frozen_copy(model) if cfg.kl_coef > 0 and not self.lora else None
        self.has_reference = cfg.kl_coef > 0
        if cfg.gradient_checkpointing:
            enable_checkpointing(self.scorer)
        self.baseline = adv.RunningMean()
        self.version = start_version
        self.steps_skipped = 0
        self.last_skip_reason = ""

    @staticmethod
    def _frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
        ref = copy.deepcopy(model).eval()
        for p in ref.parameters():
            p.requires_grad_(False)
        return ref

    def advantages(self, batch: TrainBatch) -> torch.Tensor:
        return self.algorithm.advantages(batch.rewards, batch.group_index, self.cfg, self.baseline)

    def step(self, groups: list[list[Trajectory]]) -> dict[str, float]:
        """Train on the groups; returns per-step metrics. Advances `version` unless skipped.

        Makes `algorithm.epochs(cfg)` passes over the batch: 1, or `learner.ppo_epochs` for `ppo`
        (each an Adam step, the ratio always against the behavior log-probs, so the clip bounds
        the whole step); the metrics are the first pass's (the behavior/learner mismatch as it arrived), plus the last pass's clip
        fraction. A non-finite pass ends the step; the step counts as skipped if no pass updated.
        """
        t0 = time.perf_counter()
        kept = groups
        if self.cfg.filter_constant_groups:  # dynamic sampling: only groups with a spread
            kept = [groups[i] for i in adv.varied_groups([[t.reward for t in g] for g in groups])]
        if not kept:
            return self._skipped(t0, groups, "every group's rewards were equal "
                                 "(learner.filter_constant_groups)")  # fmt: skip
        batch = collate(kept, self.pad_id).to(self.device)
        advantages = self.advantages(batch).to(self.device)
        truncated = 0
        if self.cfg.mask_truncated:  # overlong filtering, after the advantages saw every member
            batch.mask, truncated = losses.mask_truncated(
                batch.mask, batch.completion_ids, self.eos_id
            )
        epochs = self.algorithm.epochs(self.cfg)
        updates, skip, optimizer_s = 0, "", 0.0
        for epoch in range(epochs):
            last, skip, seconds = self._update(batch, advantages)
            if epoch == 0:
                metrics = last
            optimizer_s += seconds
            if skip:
                break
            updates += 1
        if epochs > 1:
            metrics.update(
                ppo_epochs_done=float(updates), clip_frac_last=last.get("clip_frac", 0.0)
            )
        if updates:
            self.scheduler.step()
            self.version += 1
        else:
            self.steps_skipped += 1
            self.last_skip_reason = skip
        metrics.update(
            groups_filtered=float(len(groups) - len(kept)),
            truncated_masked=float(truncated),
            lr=self.optimizer.param_groups[0]["lr"],
            skipped=float(not updates),
            forward_backward_s=time.perf_counter() - t0 - optimizer_s,
            optimizer_s=optimizer_s,
            version=float(self.version),
        )
        return metrics

    def _skipped(self, t0: float, groups: list, reason: str) -> dict[str, float]:
        """A step with nothing to train on: no update, no new version, counted with its reason."""
        self.steps_skipped += 1
        self.last_skip_reason = reason
        rewards = [t.reward for g in groups for t in g]
        return {
            "loss": float("nan"),
            "reward_mean": sum(rewards) / max(len(rewards), 1),
            "groups_filtered": float(len(groups)),
            "truncated_masked": 0.0,
            "lr": self.optimizer.param_groups[0]["lr"],
            "skipped": 1.0,
            "forward_backward_s": time.perf_counter() - t0,
            "optimizer_s": 0.0,
            "version": float(self.version),
        }

    def _update(self, batch: TrainBatch, advantages: torch.Tensor) -> tuple[dict, str, float]:
        """One forward/backward/Adam pass; returns (metrics, skip reason or "", optimizer seconds).

        With `learner.micro_batch_size` the batch goes through in slices of rows whose losses
        are weighted by their share of the whole batch's aggregate (`_shares`), so the gradients
        accumulate to the full batch's; the metrics are then computed once over the whole batch
        from the slices' detached log-probs, exactly as without slices.
        """
        self.optimizer.zero_grad(set_to_none=True)
        parts = split_rows(batch, self.cfg.micro_batch_size)
        logprobs, entropies, ref_logprobs, skip, row = [], [], [], "", 0
        for part in parts:
            rows = slice(row, row + part.input_ids.shape[0])
            row = rows.stop
            loss, lp, ent, ref = self._part_loss(part, advantages[rows])
            share, token_share = self._shares(part.mask, batch.mask)
            logprobs.append(lp.detach())
            entropies.append(ent.detach())
            ref_logprobs.append(ref)
            scaled = share * loss
            if self.cfg.entropy_coef:
                scaled = scaled - self.cfg.entropy_coef * token_share * self._entropy(ent, part)
            if self.cfg.first_token_entropy_coef:  # a share of the rows with a first token
                first_share = float(part.mask[:, 0].sum()) / max(float(batch.mask[:, 0].sum()), 1)
                first = losses.first_token_mean(ent, part.mask)
                scaled = scaled - self.cfg.first_token_entropy_coef * first_share * first
            if not math.isfinite(float(scaled.detach())):
                skip = "non-finite loss"
                break
            scaled.backward()
        metrics = self._metrics(batch, advantages, logprobs, entropies, ref_logprobs, skip)
        if not skip:
            grad_norm = self._clip_gradients()
            metrics["grad_norm"] = grad_norm
            skip = "" if math.isfinite(grad_norm) else "non-finite gradient norm"
        t1 = time.perf_counter()
        if skip:
            self.optimizer.zero_grad(set_to_none=True)
        else:
            self.optimizer.step()
        return metrics, skip, time.perf_counter() - t1

    def _logprobs(self, model, part: TrainBatch, entropy_grad: bool = False):
        with self._autocast():
            return completion_logprobs(
                model, part, self.temperature, self.cfg.logprob_chunk_rows, entropy_grad
            )

    def _part_loss(self, part: TrainBatch, advantages: torch.Tensor):
        """(policy + kl_coef * KL on this slice, its log-probs, entropies, reference log-probs)."""
        entropy_grad = bool(self.cfg.entropy_coef or self.cfg.first_token_entropy_coef)
        logprobs, entropy = self._logprobs(self.scorer, part, entropy_grad)
        loss = self._policy_loss(logprobs, part, advantages).loss
        ref = None
        if self.has_reference:
            ref = self._reference_logprobs(part)
            kl = self._kl(logprobs, ref, part.mask)
            loss = loss + self.cfg.kl_coef * kl
        return loss, logprobs, entropy, ref

    @torch.no_grad()
    def _reference_logprobs(self, part: TrainBatch) -> torch.Tensor:
        if self.lora:
            with lora.reference_off(self.model):
                return self._logprobs(self.scorer, part)[0]
        return self._logprobs(self.reference, part)[0]

    def _kl(self, logprobs, ref_logprobs, mask) -> torch.Tensor:
        c = self.cfg
        return losses.kl_penalty(
            logprobs, ref_logprobs, mask, c.kl_estimator, c.aggregation, c.log_ratio_bound,
            c.norm_tokens,
        )  # fmt: skip

    @staticmethod
    def _entropy(per_token: torch.Tensor, batch: TrainBatch) -> torch.Tensor:
        return losses.aggregate(per_token, batch.mask, "token")

    def _shares(self, part_mask: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
        """A slice's weight in the whole batch's aggregate (cfg.aggregation) and in its token
        mean: real tokens (token) or non-empty rows (sequence), over the batch's total."""
        real, part = mask.bool(), part_mask.bool()
        token_share = float(part.sum()) / max(float(real.sum()), 1.0)
        if self.cfg.aggregation == "token":
            return token_share, token_share
        if self.cfg.aggregation == "constant":  # sum / (rows x norm_tokens): a share of rows
            return part.shape[0] / max(real.shape[0], 1), token_share
        rows = float(part.any(1).sum()) / max(float(real.any(1).sum()), 1.0)
        return rows, token_share

    def _metrics(self, batch, advantages, logprobs, entropies, ref_logprobs, skip) -> dict:
        """The step's metrics over the whole batch (or the slices that ran, if one failed)."""
        n = sum(lp.shape[0] for lp in logprobs)
        whole = split_rows(batch, n)[0] if n < batch.input_ids.shape[0] else batch
        lp, advantages = torch.cat(logprobs), advantages[:n]
        with torch.no_grad():
            policy = self._policy_loss(lp, whole, advantages)
            loss, metrics = policy.loss, dict(policy.stats)
            if self.has_reference:
                kl = self._kl(lp, torch.cat(ref_logprobs), whole.mask)
                loss = loss + self.cfg.kl_coef * kl
                metrics["kl_ref"] = float(kl)
            entropy = self._entropy(torch.cat(entropies), whole)
            first = losses.first_token_mean(torch.cat(entropies), whole.mask)
            loss = (
                loss - self.cfg.entropy_coef * entropy - self.cfg.first_token_entropy_coef * first
            )
        metrics.update(losses.behavior_mismatch(lp, whole.behavior_logprobs, whole.mask))
        metrics["entropy"] = float(entropy)
        metrics["entropy_first"] = float(first)  # the opening token's (news feed: the topic)
        metrics["loss"] = float("nan") if skip else float(loss)
        metrics["completion_len"] = float(batch.mask.sum(1).mean())
        metrics["reward_mean"] = float(batch.rewards.mean())
        metrics["advantage_abs_mean"] = float(advantages.abs().mean())
        return metrics

    def _policy_loss(
        self, logprobs: torch.Tensor, batch: TrainBatch, advantages: torch.Tensor
    ) -> LossResult:
        return self.algorithm.loss(
            logprobs, batch.behavior_logprobs, batch.mask, advantages, self.cfg
        )

    def _autocast(self):
        return torch.autocast("cuda", dtype=self.compute_dtype, enabled=self.autocast)

    def _clip_gradients(self) -> float:
        params = [p for p in self.model.parameters() if p.grad is not None]
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip > 0 else float("inf")
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))

    def state_dict_cpu(self) -> dict[str, torch.Tensor]:
        """All the weights (with LoRA: base and adapter, peft's names): detached CPU copies,
        safe to hand to other processes; what a resume restores with load_state_dict."""
        return {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    def publish_state(self) -> dict[str, torch.Tensor]:
        """What a new version sends workers: the adapter's tensors with LoRA, else all weights
        (detached CPU copies); workers apply it with `rewardloop.lora.load_weights`."""
        return lora.publish_state(self.model)

    def trainer_state(self) -> dict:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "version": self.version,
            "baseline": self.baseline.value,
            "steps_skipped": self.steps_skipped,
        }

    def load_trainer_state(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.version = int(state["version"])
        self.baseline.value = state["baseline"]
        self.steps_skipped = int(state.get("steps_skipped", 0))
