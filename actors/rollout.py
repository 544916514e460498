"""The rollout loop of one worker, in plain Python (cluster/ wraps it in a Ray actor).

repeat:
    if max_pending_groups groups still await delayed rewards: wait for ratings
    wait until the learner grants credits (room) -- granted in whole groups; generate that many
    version-aware admission: swap to the newest weights, and if the learner (as of its last
        grant) is more than max_staleness versions ahead, block on a long-poll for newer ones
    sample prompts; generate G completions each, with behavior log-probs and the version
    score them with the reward source (delayed sources answer later via poll())
    send complete groups to the learner within credits

A member whose reward is NaN or inf (from any reward source) is dropped here, counted in
`non_finite_rewards` and logged once per source, so nothing non-finite reaches the learner and
no sibling waits for it: the rest of its group goes on with `group_size` fixed up, or, with
fewer than 2 members left (no comparison to learn from), is dropped too (`groups_dropped`,
its members in `siblings_dropped`). A reward source that fails after its own bounded retries
(`Unavailable`) fails that generation: dropped, counted in `reward_failed`; the worker goes on.

The learner is seen only through `rewardloop.sink.TrajectorySink`. Where the sink does not ration
(`credits is None`: a ListSink in tests, benchmarks), a version feeds at most max_staleness + 1
generations instead. Every wait returns early once `stop` is set.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable

import torch

from rewardloop import lora
from rewardloop.actors.rollout_records import PendingGroup, is_finite_score, new_counters
from rewardloop.config import RunConfig
from rewardloop.errors import Unavailable
from rewardloop.prompts import PromptSource, encode_prompt
from rewardloop.sampling import sample_completions
from rewardloop.scoring import EXPIRED, Score, Scorer, ScoreRequest
from rewardloop.sink import CreditWait, TrajectorySink
from rewardloop.trajectory import RewardPart, Trajectory

log = logging.getLogger(__name__)
WeightUpdate = tuple[int, dict[str, torch.Tensor]] | None
WeightSource = Callable[[int], WeightUpdate]
"""poll(have_version) -> (version, state_dict) if a newer one is published, else None (no wait)."""
WeightWait = Callable[[int, float], WeightUpdate]
"""wait(newer_than, timeout_s): like poll, but blocks up to timeout_s for a newer version."""
WAIT_SLICE_S = 0.5  # longest single blocking call, so that a set `stop` is seen this soon


class RolloutWorker:
    """One worker's loop. `weights` polls for newer weights; `wait_weights`, when given, is the
    long-poll used while the worker must have newer ones (else it polls every few ms)."""

    def __init__(
        self,
        worker_id: str,
        cfg: RunConfig,
        model: torch.nn.Module,
        tokenizer,
        prompts: PromptSource,
        reward: Scorer,
        sink: TrajectorySink,
        weights: WeightSource | None = None,
        seed: int = 0,
        wait_weights: WeightWait | None = None,
    ):
        self.worker_id = worker_id
        self.cfg = cfg
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.prompts = prompts
        self.reward = reward
        self.sink = sink
        self.weights = weights
        self.wait_weights = wait_weights if weights is not None else None
        self.rng = random.Random(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.version = 0
        self.generations_on_version = 0
        self.pending: dict[str, PendingGroup] = {}
        self._warned_sources: set[str] = set()  # non-finite rewards are logged once per source
        # told (id, outcome, reason) of each trajectory dropped here, never sent: the spool's
        # journal (actors/spool.py) keeps them, so the run's accounting knows of them
        self.on_dropped: Callable[[list[tuple[str, str, str]]], None] | None = None
        self.counters = new_counters()

    # -- weights -------------------------------------------------------------------------
    def maybe_swap_weights(self) -> bool:
        """Load the newest published weights if they are newer (one poll, no waiting)."""
        if self.weights is None:
            return False
        return self._apply(self.weights(self.version))

    def _apply(self, update: WeightUpdate) -> bool:
        if update is None:
            return False
        version, state = update
        if version <= self.version and self.counters["weight_swaps"] > 0:
            return False
        lora.load_weights(self.model, state)  # full weights, or the adapter onto the base
        self.version = version
        self.generations_on_version = 0
        self.counters["weight_swaps"] += 1
        return True

    def required_version(self) -> int:
        """The oldest weights whose data the learner can still use (version-aware admission).

        When the sink knows the learner's version L (its latest grant said so), nothing sent
        now is trained on before L, so weights older than L - max_staleness would make data
        that is dropped on arrival. Otherwise (-1: not known yet, or a sink without credits):
        a version feeds at most max_staleness + 1 generations."""
        staleness = self.cfg.learner.max_staleness
        learner_version = self.sink.learner_version
        if learner_version >= 0:
            return learner_version - staleness
        if self.generations_on_version > staleness:
            return self.version + 1
        return self.version

    def wait_for_fresh_weights(self, stop: threading.Event, timeout_s: float) -> None:
        """Swap to the newest weights; block (long-poll) while they are older than
        `required_version()`. Gives up after `timeout_s` (generating anyway) or on stop."""
        if self.weights is None:
            return
        self.maybe_swap_weights()
        if self.version >= self.required_version():
            return
        t0 = time.monotonic()
        while self.version < self.required_version() and not stop.is_set():
            left = timeout_s - (time.monotonic() - t0)
            if left <= 0:
                log.warning(
                    "worker %s: no weights >= v%d after %.0fs; generating with v%d anyway",
                    self.worker_id,
                    self.required_version(),
                    timeout_s,
                    self.version,
                )
                break
            if self.pending or self.wait_weights is None:
                self._idle()  # delayed rewards keep flowing meanwhile
                self.maybe_swap_weights()
            else:
                self._apply(self.wait_weights(self.version, min(left, WAIT_SLICE_S)))
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

    def wait_for_room(self, stop: threading.Event, timeout_s: float) -> int:
        """Generate only when the learner has room for the result: data made while its buffer
        is full would only grow stale waiting for credits (and be dropped). Returns how many
        groups to generate: as many as the credits cover (they come in whole groups, beyond
        those reserved by groups awaiting rewards), at most prompts_per_generation and at
        least one (after a timeout, send() waits for the rest). A sink without credits: at once."""
        rc = self.cfg.rollout
        if self.sink.credits is None:
            return rc.prompts_per_generation
        reserved = sum(len(p.members) for p in self.pending.values())
        t0 = time.monotonic()
        while not stop.is_set():
            slice_s = min(timeout_s - (time.monotonic() - t0), WAIT_SLICE_S)
            if slice_s <= 0:
                break
            outcome = self.sink.wait_for_credits(reserved + rc.group_size, slice_s)
            if outcome is not CreditWait.TIMED_OUT:
                break  # GRANTED; or ENDED (stream ended or aborted): send() reconnects or says why
        self.counters["waited_for_credits_s"] += time.monotonic() - t0
        credits = self.sink.credits or 0
        return max(1, min(rc.prompts_per_generation, (credits - reserved) // rc.group_size))

    # -- one generation ------------------------------------------------------------------
    def generate(self, n_groups: int | None = None) -> list[Trajectory]:
        """Sample `n_groups` prompts (default prompts_per_generation) and a group of G
        completions for each; returns trajectories (reward filled in when known)."""
        rc = self.cfg.rollout
        prompts = self.prompts.sample(n_groups or rc.prompts_per_generation, self.rng)
        prompt_ids = [encode_prompt(self.tokenizer, p.text) for p in prompts]
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
        try:
            scores, failure = self.reward.score(requests), None
        except Unavailable as exc:  # timed out or failed after its retries (reward.timeout_s,
            scores, failure = None, exc  # reward.retries): these fail, the worker goes on
        self.counters["generate_s"] += t1 - t0
        self.counters["reward_s"] += time.perf_counter() - t1
        self.counters["generations"] += 1
        self.counters["groups"] += len(prompts)
        self.counters["trajectories"] += len(trajectories)
        self.counters["tokens"] += sum(len(s.completion_ids) for s in samples)
        self.generations_on_version += 1
        if failure is not None:
            self._reward_failed(trajectories, failure)
            return []
        for gid in group_ids:
            members = [t for t in trajectories if t.group_id == gid]
            self.pending[gid] = PendingGroup(members, {t.id for t in members})
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
                    self._dropped([t], "expired", "rating: expired before it came")
                elif not is_finite_score(score):  # ingest would reject it: drop it here, counted
                    group.members.remove(t)
                    group.non_finite += 1
                    self._dropped([t], "rejected", f"reward: not finite ({score.reward!r})")
                    self._count_non_finite(score)
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

    def _reward_failed(self, trajs: list[Trajectory], exc: Exception) -> None:
        """The reward source gave up on a generation: its trajectories are dropped, counted in
        `reward_failed` (never waited on: the source's own deadline and retries bound the call)."""
        self.counters["reward_failed"] += len(trajs)
        log.warning(
            "worker %s: reward source failed, %d trajectories dropped (reward_failed): %s",
            self.worker_id,
            len(trajs),
            exc,
        )
        self._dropped(trajs, "rejected", f"reward: the reward source failed ({exc})")

    def _dropped(self, trajs: list[Trajectory], outcome: str, reason: str) -> None:
        if self.on_dropped is not None and trajs:
            self.on_dropped([(t.id, outcome, reason) for t in trajs])

    def _count_non_finite(self, score: Score) -> None:
        self.counters["non_finite_rewards"] += 1
        source = score.source or type(self.reward).__name__
        if source not in self._warned_sources:
            self._warned_sources.add(source)
            log.warning(
                "worker %s: reward source %r gave a non-finite reward (%r); dropping such "
                "trajectories (counted in non_finite_rewards, logged once per source)",
                self.worker_id,
                source,
                score.reward,
            )

    def ready_groups(self) -> list[Trajectory]:
        """Trajectories of every group whose members all have rewards (group_size fixed up).

        A group that lost members to non-finite rewards and has fewer than 2 left is dropped."""
        for item_id, score in self.reward.poll(0.0):
            self._complete(item_id, score)
        out = []
        for gid in [g for g, p in self.pending.items() if not p.waiting]:
            group = self.pending.pop(gid)
            members = group.members
            if group.non_finite and len(members) < 2:
                self.counters["groups_dropped"] += 1
                self.counters["siblings_dropped"] += len(members)
                reason = "group: fewer than 2 members left after non-finite rewards"
                self._dropped(members, "rejected", reason)
                continue
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
        self._count_result(result)

    def _count_result(self, result) -> None:
        for key in ("accepted", "duplicate", "rejected"):
            self.counters[key] += len(getattr(result, key))

    def run(self, stop: threading.Event, max_generations: int | None = None) -> dict:
        """The loop; returns counters. Transient learner unavailability is retried, not fatal."""
        timeout = self.cfg.rollout.rpc_timeout_s
        while not stop.is_set() and (
            max_generations is None or self.counters["generations"] < max_generations
        ):
            if not self.wait_for_ratings(stop, timeout):
                continue
            n_groups = self.wait_for_room(stop, timeout)
            if stop.is_set():
                break
            self.wait_for_fresh_weights(stop, timeout)  # after the grant: it names the version
            if stop.is_set():
                break
            self.generate(n_groups)
            try:
                self.flush()
            except Unavailable as exc:
                if stop.is_set():
                    break
                log.warning("worker %s: %s; retrying", self.worker_id, exc)
        return dict(self.counters)

    def drain(self, timeout_s: float) -> dict:
        """After `run()` stopped (a scale-down): send what is still held -- groups whose delayed
        rewards arrive within `timeout_s`, and any the sink kept after a failed send -- then
        count what is left in `unsent_at_exit`. Returns the counters."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.flush()
                if self.sink.carried:  # kept by a failed send: alone now
                    self._count_result(self.sink.send([]))
            except Unavailable as exc:
                log.warning("worker %s: draining: %s", self.worker_id, exc)
            left = sum(len(p.members) for p in self.pending.values())
            left += self.sink.carried
            if not left or time.monotonic() >= deadline:
                break
            self._idle()
        self.counters["unsent_at_exit"] = left
        return dict(self.counters)
