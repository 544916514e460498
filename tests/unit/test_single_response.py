"""The single-response estimator: the keyed baseline by hand, stale drops, a real step that
moves the parameters toward the liked completion, and forget reaching the buffer."""

from __future__ import annotations

import math

import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from rewardloop.config import LearnerConfig
from rewardloop.learner.single_response import KeyedBaseline, SingleResponseLearner
from rewardloop.learner.trainer import Trainer
from rewardloop.trajectory import Trajectory


def test_keyed_baseline_by_hand():
    b = KeyedBaseline(decay=0.5)
    a = b.advantages(torch.tensor([1.0, 0.0, 1.0, 1.0]), ["x", "x", "y", "x"])
    # x: first 1 -> A 0, b 1; then 0 -> A -1, b 0.5; y: first -> A 0; x: 1 -> A 0.5
    assert a.tolist() == [0.0, -1.0, 0.0, 0.5]
    assert b.values == {"x": 0.75, "y": 1.0}


def _traj(i: int, completion: list[int], reward: float, version: int, user: str, model, key="k"):
    prompt = [1, 2, 3]
    with torch.no_grad():
        logits = model(torch.tensor([prompt + completion])).logits[0]
        lp = torch.log_softmax(logits, -1)
        behavior = [float(lp[len(prompt) - 1 + j, t]) for j, t in enumerate(completion)]
    return Trajectory(f"t{i}", f"t{i}", np.array(prompt), np.array(completion),
                      np.array(behavior), reward, version, prompt_key=key, rater=user)  # fmt: skip


def _learner(lag: int = 2):
    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(vocab_size=16, n_positions=16, n_layer=1, n_embd=16, n_head=2)
    )
    cfg = LearnerConfig(lr=5e-2, warmup_steps=0, is_level="sequence")
    return SingleResponseLearner(Trainer(model, cfg, pad_id=0), lag, baseline_decay=0.5), model


def _logp(model, completion):
    with torch.no_grad():
        lp = torch.log_softmax(model(torch.tensor([[1, 2, 3, *completion]])).logits[0], -1)
    return sum(float(lp[2 + j, t]) for j, t in enumerate(completion))


def test_step_moves_toward_the_liked_response_and_drops_stale():
    learner, model = _learner(lag=2)
    good, bad = [5, 6], [9, 10]
    before = _logp(model, good) - _logp(model, bad)
    for _ in range(8):
        items = [_traj(i, good if i % 2 else bad, float(i % 2), learner.version, "u", model)
                 for i in range(8)]  # fmt: skip
        assert learner.add(items) == []
        trained, metrics = learner.step(8)
        assert len(trained) == 8 and math.isfinite(metrics["loss"])
    assert learner.version == 8
    assert _logp(model, good) - _logp(model, bad) > before + 1.0
    stale = learner.add([_traj(99, good, 1.0, learner.version - 3, "u", model)])
    assert [t.id for t in stale] == ["t99"] and learner.counts["stale"] == 1


def test_forget_reaches_the_buffer():
    learner, model = _learner()
    learner.add([_traj(i, [5], 1.0, 0, "alice" if i < 3 else "bob", model) for i in range(5)])
    assert learner.buffer.forget("alice") == 3
    assert learner.buffer.users() == {"bob"} and len(learner.buffer) == 2
    assert learner.step(3) is None  # too few left for a step


def test_min_batch_waits_for_fresh_ratings_then_takes_what_arrived():
    """serve.min_batch: no step below it (stale ones pruned first, so they cannot fill it);
    at or above it one step takes everything buffered, up to batch_size."""
    learner, model = _learner(lag=1)
    learner.add([_traj(i, [5], 1.0, 0, "u", model) for i in range(3)])
    assert learner.step(16, min_batch=4) is None  # 3 fresh < 4: the learner waits
    learner.add([_traj(3, [6], 0.0, 0, "u", model)])
    trained, _ = learner.step(16, min_batch=4)
    assert len(trained) == 4 and learner.version == 1 and len(learner.buffer) == 0
    learner.add([_traj(i, [5], 1.0, 0, "u", model) for i in range(4, 10)])  # lag 1: fresh
    learner.add([_traj(i, [6], 0.0, 1, "u", model) for i in range(10, 13)])
    trained, _ = learner.step(4, min_batch=4)  # the oldest 4; two at version 0 stay behind
    assert [t.id for t in trained] == ["t4", "t5", "t6", "t7"] and learner.version == 2
    trained, metrics = learner.step(16, min_batch=4)  # those two are now stale: pruned, and
    assert trained == [] and metrics["stale_ids"] == ["t8", "t9"]  # 3 fresh < 4: no step
    assert learner.step(16, min_batch=4) is None and len(learner.buffer) == 3
    assert learner.version == 2 and learner.counts["stale"] == 2
    learner.add([_traj(i, [5], 1.0, 2, "u", model) for i in range(13, 31)])
    trained, _ = learner.step(16, min_batch=4)  # 21 fresh: the oldest 16 in one step
    assert len(trained) == 16 and len(learner.buffer) == 5 and learner.version == 3
