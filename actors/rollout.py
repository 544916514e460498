"""The rollout loop of one worker, in plain Python (cluster/ wraps it in a Ray actor).

repeat:
    swap to the newest weights if there are any (between generations only)
    if this version already fed max_staleness + 1 generations: wait for a newer one
    if max_pending_groups groups still await delayed rewards: wait for ratings
    wait until the learner has credits (room) for the next batch, then swap weights again
    sample prompts; generate G completions each, with behavior log-probs and the version
    score them with the reward source (delayed sources answer later via poll())
    send complete groups to the learner within credits
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from rewardloop.config import RunConfig
from rewardloop.errors import Unavailable
from rewardloop.prompts import PromptSource
from rewardloop.sampling import sample_completions
from rewardloop.scoring import EXPIRED, Score, Scorer, ScoreRequest
from rewardloop.trajectory import RewardPart, Trajectory

log = logging.getLogger(__name__)
WeightSource = Callable[[int], "tuple[int, dict[str, torch.Tensor]] | None"]


@dataclass
class _PendingGroup:
    members: list[Trajectory]
    waiting: set[str]
    created: float = field(default_factory=time.monotonic)


class RolloutWorker:
    def __init__(
        self,
        worker_id: str,
        cfg: RunConfig,
        model: torch.nn.Module,
        tokenizer,
        prompts: PromptSource,
        reward: Scorer,
        sink,
        weights: WeightSource | None = None,
        seed: int = 0,
    ):
        self.worker_id = worker_id
        self.cfg = cfg
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.prompts = prompts
        self.reward = reward
        self.sink = sink
        self.weights = weights
        self.rng = random.Random(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.version = 0
        self.generations_on_version = 0
        self.pending: dict[str, _PendingGroup] = {}
        self.counters = {
            "generations": 0,
            "trajectories": 0,
            "tokens": 0,
            "sent": 0,
            "accepted": 0,
            "duplicate": 0,
            "rejected": 0,
            "weight_swaps": 0,
            "waited_for_version_s": 0.0,
            "generate_s": 0.0,
            "reward_s": 0.0,
            "send_s": 0.0,
            "waited_for_ratings_s": 0.0,
            "waited_for_credits_s": 0.0,
        }

    # -- weights -------------------------------------------------------------------------
    def maybe_swap_weights(self) -> bool:
        if self.weights is None:
            return False
        update = self.weights(self.version)
        if update is None:
            return False
        version, state = update
        if version <= self.version and self.counters["weight_swaps"] > 0:
            return False
        self.model.load_state_dict(state)
        self.version = version
        self.generations_on_version = 0
        self.counters["weight_swaps"] += 1
        return True

    def wait_for_fresh_weights(self, timeout_s: float) -> None:
        """Bound staleness at the source: a version feeds at most max_staleness + 1 generations."""
        if self.weights is None or self.generations_on_version <= self.cfg.learner.max_staleness:
            return
        t0 = time.monotonic()
        while not self.maybe_swap_weights():
            if time.monotonic() - t0 > timeout_s:
                log.warning(
                    "worker %s: no new weights after %.0fs; generating anyway",
                    self.worker_id,
                    timeout_s,
                )
                break
            self._idle()
        self.counters["waited_for_version_s"] += time.monotonic() - t0

    def wait_for_ratings(self, stop: threading.Event, timeout_s: float) -> bool:
        """Bound delayed work: while max_pending_groups groups await rewards, keep flushing.

        Returns True when there is room to generate (False after `timeout_s` or on stop)."""
        limit = self.cfg.rollout.max_pending_groups
        t0 = time.monotonic()
        while limit and len(self.pending) >= limit and not stop.is_set():
            if time.monotonic() - t0 > timeout_s:
                log.warning(
                    "worker %s: %d groups still await rewards after %.0fs",
                    self.worker_id,
                    len(self.pending),
                    timeout_s,
                )
                break
            self._idle()
        self.counters["waited_for_ratings_s"] += time.monotonic() - t0
        return not limit or len(self.pending) < limit

    def _idle(self) -> None:
        """One beat of a wait: delayed rewards keep flowing to the learner meanwhile."""
        if not self.pending:
            time.sleep(0.005)
            return
        try:
            self.flush()
        except Unavailable as exc:
            log.warning("worker %s: %s; retrying", self.worker_id, exc)
        time.sleep(0.05)  # polls the reward source ~20 times a second, not in a hot loop

    def wait_for_room(self, timeout_s: float) -> None:
        """Generate only when the learner has room for the result: data made while its buffer
        is full would only grow stale waiting for credits (and be dropped)."""
        wait = getattr(self.sink, "wait_for_credits", None)
        if wait is None:
            return
        t0 = time.monotonic()
        rc = self.cfg.rollout
        wait(rc.prompts_per_generation * rc.group_size, timeout_s)
        self.counters["waited_for_credits_s"] += time.monotonic() - t0
        self.maybe_swap_weights()  # the learner may have moved on while we waited

    # -- one generation ------------------------------------------------------------------
    def generate(self) -> list[Trajectory]:
        """Sample one batch of groups; returns trajectories (reward filled in when known)."""
        rc = self.cfg.rollout
        prompts = self.prompts.sample(rc.prompts_per_generation, self.rng)
        prompt_ids = [
            self.tokenizer(p.text, add_special_tokens=False)["input_ids"] for p in prompts
        ]
        t0 = time.perf_counter()
        samples = sample_completions(
            self.model,
            prompt_ids,
            rc.group_size,
            rc.max_new_tokens,
            eos_id=self.tokenizer.eos_token_id,
            pad_id=self.tokenizer.pad_token_id,
            temperature=rc.temperature,
            generator=self.generator,
        )
        t1 = time.perf_counter()
        group_ids = [uuid.uuid4().hex for _ in prompts]
        trajectories = [
            Trajectory(
                id=uuid.uuid4().hex,
                group_id=group_ids[s.prompt_index],
                prompt_ids=prompt_ids[s.prompt_index],
                completion_ids=s.completion_ids,
                behavior_logprobs=s.logprobs,
                reward=0.0,
                policy_version=self.version,
                worker_id=self.worker_id,
                group_size=rc.group_size,
                prompt_key=prompts[s.prompt_index].key,
            )
            for s in samples
        ]
        requests = [
            ScoreRequest(
                id=t.id,
                prompt=prompts[s.prompt_index].text,
                completion=self.tokenizer.decode(s.completion_ids, skip_special_tokens=True),
                prompt_key=t.prompt_key,
            )
            for t, s in zip(trajectories, samples, strict=True)
        ]
        scores = self.reward.score(requests)
        self.counters["generate_s"] += t1 - t0
        self.counters["reward_s"] += time.perf_counter() - t1
        self.counters["generations"] += 1
        self.counters["trajectories"] += len(trajectories)
        self.counters["tokens"] += sum(len(s.completion_ids) for s in samples)
        self.generations_on_version += 1
        for gid in group_ids:
            members = [t for t in trajectories if t.group_id == gid]
            self.pending[gid] = _PendingGroup(members, {t.id for t in members})
        for t, score in zip(trajectories, scores, strict=True):
            if score is not None:
                self._complete(t.id, score)
        return trajectories

    def _complete(self, trajectory_id: str, score: Score) -> None:
        for group in self.pending.values():
            if trajectory_id in group.waiting:
                t = next(m for m in group.members if m.id == trajectory_id)
                if score.source == EXPIRED:  # a delayed rating that will never come: drop it
                    group.members.remove(t)
                else:
                    t.reward = float(score.reward)
                    t.reward_parts = list(score.parts) or [
                        RewardPart(score.source or "reward", t.reward)
                    ]
                    t.feedback_source, t.rater, t.feedback_latency_s = (
                        score.source,
                        score.rater,
                        score.latency_s,
                    )
                group.waiting.discard(trajectory_id)
                return

    def ready_groups(self) -> list[Trajectory]:
        """Trajectories of every group whose members all have rewards (group_size fixed up)."""
        for item_id, score in self.reward.poll(0.0):
            self._complete(item_id, score)
        out = []
        for gid in [g for g, p in self.pending.items() if not p.waiting]:
            members = self.pending.pop(gid).members
            for t in members:
                t.group_size = len(members)
            out.extend(members)
        return out

    def flush(self) -> None:
        ready = self.ready_groups()
        if not ready:
            return
        t0 = time.perf_counter()
        result = self.sink.send(ready)
        self.counters["send_s"] += time.perf_counter() - t0
        self.counters["sent"] += len(ready)
        for name in ("accepted", "duplicate", "rejected"):
            self.counters[name] += len(getattr(result, name, ()) or ())

    def run(self, stop: threading.Event, max_generations: int | None = None) -> dict:
        """The loop; returns counters. Transient learner unavailability is retried, not fatal."""
        timeout = self.cfg.rollout.rpc_timeout_s
        self.maybe_swap_weights()
        while not stop.is_set() and (
            max_generations is None or self.counters["generations"] < max_generations
        ):
            self.maybe_swap_weights()
            self.wait_for_fresh_weights(timeout)
            if stop.is_set():
                break
            if not self.wait_for_ratings(stop, timeout):
                continue
            self.wait_for_room(timeout)
            self.generate()
            try:
                self.flush()
            except Unavailable as exc:
                if stop.is_set():
                    break
                log.warning("worker %s: %s; retrying", self.worker_id, exc)
        return dict(self.counters)
