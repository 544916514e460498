"""The policy update: one optimizer step on a list of complete groups.

batch      <- collate(groups)
logits     <- policy(prompt + completion)               # learner recomputes log-probs
algo       <- ALGORITHM_TABLE[learner.algorithm]        # once, in __init__ (algorithms.py)
A          <- algo.advantages(rewards, groups)          # grpo | rloo | reinforce | ppo
grpo, ppo:  loss = -clip-objective(ratio = pi / pi_behavior, A)       (algo.loss)
rloo, reinforce: loss = -A * log pi * min(pi / pi_behavior, cap)   (truncated IS)
loss      += kl_coef * KL(pi || pi_ref) - entropy_coef * H(pi)
skip the step if the loss or the gradient norm is not finite (counted, with the reason)
clip the gradient norm, Adam step          # repeated for algo.epochs(cfg) passes (ppo)
schedule step, version += 1
"""

from __future__ import annotations

import copy
import math
import time

import torch

from rewardloop.config import LearnerConfig
from rewardloop.learner import advantages as adv
from rewardloop.learner import losses
from rewardloop.learner.algorithms import LossResult, algorithm_for
from rewardloop.learner.batching import TrainBatch, collate, completion_logits, token_logprobs
from rewardloop.learner.schedule import make_scheduler
from rewardloop.trajectory import Trajectory


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
    ):
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
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.scheduler = make_scheduler(
            self.optimizer, cfg.lr_schedule, cfg.warmup_steps, cfg.max_steps
        )
        self.reference = self._frozen_copy(model) if cfg.kl_coef > 0 else None
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
        batch = collate(groups, self.pad_id).to(self.device)
        advantages = self.advantages(batch).to(self.device)
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
            lr=self.optimizer.param_groups[0]["lr"],
            skipped=float(not updates),
            forward_backward_s=time.perf_counter() - t0 - optimizer_s,
            optimizer_s=optimizer_s,
            version=float(self.version),
        )
        return metrics

    def _update(self, batch: TrainBatch, advantages: torch.Tensor) -> tuple[dict, str, float]:
        """One forward/backward/Adam pass; returns (metrics, skip reason or "", optimizer seconds)."""
        with self._autocast():
            logits = completion_logits(self.model, batch, self.temperature)
        logprobs = token_logprobs(logits, batch)
        policy = self._policy_loss(logprobs, batch, advantages)
        loss, metrics = policy.loss, dict(policy.stats)
        if self.reference is not None:
            with torch.no_grad(), self._autocast():
                ref_logits = completion_logits(self.reference, batch, self.temperature)
            ref_logprobs = token_logprobs(ref_logits, batch)
            kl = losses.kl_penalty(
                logprobs, ref_logprobs, batch.mask, self.cfg.kl_estimator, self.cfg.aggregation
            )
            loss = loss + self.cfg.kl_coef * kl
            metrics["kl_ref"] = float(kl.detach())
        if self.cfg.entropy_coef:
            entropy = losses.entropy_from_logits(logits, batch.mask)
            loss = loss - self.cfg.entropy_coef * entropy
        else:  # reported only: no graph kept alive until backward
            with torch.no_grad():
                entropy = losses.entropy_from_logits(logits.detach(), batch.mask)
        metrics.update(
            losses.behavior_mismatch(logprobs.detach(), batch.behavior_logprobs, batch.mask)
        )
        metrics["entropy"] = float(entropy.detach())
        metrics["loss"] = float(loss.detach())
        metrics["completion_len"] = float(batch.mask.sum(1).mean())
        metrics["reward_mean"] = float(batch.rewards.mean())
        metrics["advantage_abs_mean"] = float(advantages.abs().mean())
        self.optimizer.zero_grad(set_to_none=True)
        skip = "" if math.isfinite(metrics["loss"]) else "non-finite loss"
        if not skip:
            loss.backward()
            grad_norm = self._clip_gradients()
            metrics["grad_norm"] = grad_norm
            skip = "" if math.isfinite(grad_norm) else "non-finite gradient norm"
        t1 = time.perf_counter()
        if skip:
            self.optimizer.zero_grad(set_to_none=True)
        else:
            self.optimizer.step()
        return metrics, skip, time.perf_counter() - t1

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
        """Weights for publishing: detached CPU float32 copies, safe to hand to other processes."""
        return {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

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
