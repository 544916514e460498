"""Learning from live traffic: one response per prompt, so no groups to compare within.

    for each joined response i (context key k_i, reward r_i, served by version v_i):
        drop i if learner.version - v_i > serve.max_version_lag             (counted: stale)
    A_i  = r_i - b[k_i]                       b[k] = running baseline of context k, read first,
    b[k] <- decay * b[k] + (1 - decay) * r_i  then updated (first reward of k: b[k] = r_i, A = 0)
    A_i /= max(s[k_i], 0.1)                   with serve.scale_advantages: s[k]^2 = running mean
                                              of A^2 for k (starts at 0.25, a fair coin's)
    loss = the loss of learner.algorithm's row, with these advantages:
      every row (default): PPO-clip, ratio pi / pi_behavior clipped to [1 - clip_eps, 1 + clip_eps]
                        (a stale response can move the policy only so far from what served it)
      reinforce, rloo with learner.reinforce_loss / rloo_loss = is:
                        -mean( min(pi / pi_behavior, learner.is_cap) * A_i * log pi ), truncated
                        importance weights (per token or per completion: learner.is_level)

This is REINFORCE with a per-context baseline: the baseline removes what the context alone
predicts (a reader who likes little), leaving whether this response did better than usual for
it. The behavior log-probs come from the serving version, which may be several versions behind
the learner; the clipped ratio (default) or the truncated weights (the cap learner.is_cap,
default 2.0) correct for that gap with bounded variance, and past serve.max_version_lag the
response is not used at all. (Live runs with the truncated-weight loss drifted into malformed
text once the gap reached 5-10 versions; the clip keeps each update near the served policy.)

It plugs into the `Trainer` as an `Algorithm` (learner/algorithms.py) whose advantages come
from the keyed baseline: the table's `AdvantageFn` sees only rewards and a group index, so
this row is built per learner, with the step's context keys in hand, and is not in
ALGORITHM_TABLE (whose rows are pure functions of the batch).

A step waits for `min_batch` fresh responses (those gone stale while buffered are pruned
first) and takes up to `batch_size`: the step size follows the feedback's pace. Live runs with
a fixed batch taken oldest first, while the canary held the learner back, trained on the
backlog: 64% of the ratings went stale in the buffer and steps averaged 10 fresh of 24.

`LiveBuffer` holds joined responses until a step takes them; `forget(user_key)` removes a
user's from it, so data a user asked to be deleted never reaches an optimizer step.
"""

from __future__ import annotations

import threading

import torch

from rewardloop.learner.algorithms import Algorithm
from rewardloop.learner.trainer import Trainer
from rewardloop.trajectory import Trajectory


class KeyedBaseline:
    """A running mean (and, with `scale`, a running variance) of the reward per context key."""

    def __init__(self, decay: float = 0.9, scale: bool = False, min_std: float = 0.1):
        self.decay, self.scale, self.min_std = decay, scale, min_std
        self.values: dict[str, float] = {}
        self.variances: dict[str, float] = {}

    def advantages(self, rewards: torch.Tensor, keys: list[str]) -> torch.Tensor:
        """A_i = r_i - b[k_i] (/ max(std[k_i], min_std) with `scale`), then b and the variance
        updated with r_i, in row order."""
        out = []
        for r, k in zip(rewards.tolist(), keys, strict=True):
            b = self.values.get(k, r)
            var = self.variances.get(k, 0.25)
            a = r - b
            out.append(a / max(var**0.5, self.min_std) if self.scale else a)
            self.values[k] = self.decay * b + (1 - self.decay) * r
            self.variances[k] = self.decay * var + (1 - self.decay) * a * a
        return torch.tensor(out, dtype=rewards.dtype, device=rewards.device)


class LiveBuffer:
    """Joined responses waiting for a step, oldest first; thread-safe; forgettable by user."""

    def __init__(self):
        self._items: list[Trajectory] = []
        self._lock = threading.Lock()

    def add(self, items: list[Trajectory]) -> None:
        with self._lock:
            self._items.extend(items)

    def take(self, n: int, min_n: int | None = None) -> list[Trajectory]:
        """The oldest `n` (fewer, down to `min_n`, if that is all there is); [] below `min_n`."""
        with self._lock:
            if len(self._items) < (n if min_n is None else max(1, min_n)):
                return []
            out, self._items = self._items[:n], self._items[n:]
            return out

    def prune(self, is_stale) -> list[Trajectory]:
        """Remove and return the items `is_stale` says became too old to train on."""
        with self._lock:
            stale = [t for t in self._items if is_stale(t)]
            if stale:
                self._items = [t for t in self._items if not is_stale(t)]
            return stale

    def forget(self, user_key: str) -> int:
        """Remove every response of this pseudonym (`Trajectory.rater`); returns how many."""
        with self._lock:
            keep = [t for t in self._items if t.rater != user_key]
            removed = len(self._items) - len(keep)
            self._items = keep
            return removed

    def users(self) -> set[str]:
        with self._lock:
            return {t.rater for t in self._items}

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class SingleResponseLearner:
    """A Trainer driven by the keyed-baseline estimator over a LiveBuffer."""

    def __init__(
        self,
        trainer: Trainer,
        max_version_lag: int,
        baseline_decay: float = 0.9,
        scale: bool = False,
    ):
        self.trainer = trainer
        self.max_version_lag = max_version_lag
        self.baseline = KeyedBaseline(baseline_decay, scale)
        self.buffer = LiveBuffer()
        self.counts = {"stale": 0, "trained": 0, "steps": 0}
        self._step_keys: list[str] = []
        row = trainer.algorithm  # learner.algorithm's loss and passes, these advantages
        trainer.algorithm = Algorithm("single_response", self._advantages, row.loss, row.epochs)

    @property
    def version(self) -> int:
        return self.trainer.version

    def _advantages(self, rewards, group_index, cfg, baseline) -> torch.Tensor:
        keys = [self._step_keys[int(g)] for g in group_index.tolist()]
        return self.baseline.advantages(rewards, keys)

    def add(self, items: list[Trajectory]) -> list[Trajectory]:
        """Buffer the fresh enough; returns the stale ones (dropped, counted)."""
        fresh = [t for t in items if self.version - t.policy_version <= self.max_version_lag]
        stale = [t for t in items if self.version - t.policy_version > self.max_version_lag]
        self.counts["stale"] += len(stale)
        self.buffer.add(fresh)
        return stale

    def _stale(self, t: Trajectory) -> bool:
        return self.version - t.policy_version > self.max_version_lag

    def step(
        self, batch_size: int, min_batch: int | None = None
    ) -> tuple[list[Trajectory], dict] | None:
        """One optimizer step on the oldest buffered responses, or None if too few are fresh.

        Responses that became too stale while buffered are dropped first (returned in the
        metrics' `stale_ids`), so a step never trains on fewer than `min_batch` fresh ones
        (default `batch_size`: a fixed batch); it takes up to `batch_size`. With
        min_batch < batch_size the step size follows the feedback: whatever arrived while the
        learner waited (for ratings, or for the canary) is one step, and nothing backs up in
        the buffer until it is stale. Returns (the responses trained on, the step's metrics)."""
        stale = self.buffer.prune(self._stale)
        self.counts["stale"] += len(stale)
        fresh = self.buffer.take(batch_size, min_batch)
        if not fresh:
            return ([], {"stale_ids": [t.id for t in stale]}) if stale else None
        self._step_keys = [t.prompt_key for t in fresh]
        metrics = self.trainer.step([[t] for t in fresh])
        self.counts["steps"] += 1
        self.counts["trained"] += len(fresh)
        metrics["stale_ids"] = [t.id for t in stale]
        return fresh, metrics

    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        """Reset the policy to these weights (a rollback); the version number keeps growing."""
        self.trainer.model.load_state_dict(state)
