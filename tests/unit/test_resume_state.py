"""Resume checkpoints: a restored learner's next step equals an uninterrupted one's (optimizer,
scheduler, RNG), the buffer's held trajectories and seen ids come back, torn checkpoints are
never the one resumed, versions never name two sets of weights; and the worker's window of
acked-but-not-durable trajectories."""

import json
import random
import types

import numpy as np
import pytest
import torch
from test_trainer import rollout, tiny_model  # the same toy task (tests/unit)

from rewardloop.actors.retain import AckedWindow
from rewardloop.config import load_config
from rewardloop.learner.resume_state import MARKER, STATE, ResumeStore
from rewardloop.learner.service import LearnerService

TOKENIZER = types.SimpleNamespace(pad_token_id=0, eos_token_id=0)


def service(resume_dir, **learner):
    overrides = [f"learner.{k}={v}" for k, v in {"lr": 0.01, **learner}.items()]
    cfg = load_config(None, ["rollout.group_size=8", *overrides])
    return LearnerService(cfg, tiny_model(), TOKENIZER, resume_dir=str(resume_dir))


def params(svc):
    return {k: v.detach().clone() for k, v in svc.trainer.model.state_dict().items()}


def test_a_restored_learner_takes_the_same_next_step(tmp_path):
    torch.set_num_threads(1)
    a = service(tmp_path / "resume", warmup_steps=3, lr_schedule="linear", max_steps=10)
    for seed in (1, 2):
        a._record(rollout(a.trainer.model, a.version, seed=seed), 0.0)
    torch.manual_seed(123)
    np.random.seed(5)
    random.seed(7)
    a.checkpoints.save(a)
    drawn = (torch.rand(4), np.random.rand(3), random.random())
    step3 = rollout(a.trainer.model, a.version, seed=3)
    a._record(step3, 0.0)

    # as if `a` had stopped right after its checkpoint (its step 3 published nothing)
    a.checkpoints.store.publish_mark(2)
    b = service(tmp_path / "resume", warmup_steps=3, lr_schedule="linear", max_steps=10)
    torch.manual_seed(999)  # the restore must bring back the RNG states, not keep these
    np.random.seed(0)
    random.seed(0)
    restored = b.restore_latest()
    assert restored["step"] == 2 and restored["version"] == 2
    assert torch.equal(torch.rand(4), drawn[0])
    assert np.array_equal(np.random.rand(3), drawn[1]) and random.random() == drawn[2]
    b._record(step3, 0.0)

    assert b.version == a.version == 3
    assert [m["step"] for m in b.metrics] == [1, 2, 3]
    assert b.metrics[-1]["lr"] == pytest.approx(a.metrics[-1]["lr"])
    pa, pb = params(a), params(b)
    assert any(not torch.equal(pa[k], v) for k, v in params(service(tmp_path / "x")).items())
    for k in pa:
        torch.testing.assert_close(pb[k], pa[k], rtol=1e-5, atol=1e-6)
    sa, sb = a.trainer.optimizer.state_dict(), b.trainer.optimizer.state_dict()
    for i, st in sa["state"].items():
        torch.testing.assert_close(sb["state"][i]["exp_avg"], st["exp_avg"])
    assert b.trainer.scheduler.state_dict() == a.trainer.scheduler.state_dict()


def test_held_trajectories_and_seen_ids_come_back(tmp_path):
    a = service(tmp_path / "resume")
    groups = rollout(a.trainer.model, 0, n_groups=2, seed=4)
    for t in groups[0]:  # a whole group
        assert a.buffer.add(t, 0)[0] == "accepted"
    for t in groups[1][:3]:  # a partial one: its other members come later
        assert a.buffer.add(t, 0)[0] == "accepted"
    a.checkpoints.save(a)

    b = service(tmp_path / "resume")
    b.restore_latest()
    assert len(b.buffer) == 11 and b.buffer.stats()["groups_complete"] == 1
    assert b.buffer.add(groups[0][0], 0)[0] == "duplicate"  # a re-send of what it holds
    for t in groups[1][3:]:
        assert b.buffer.add(t, 0)[0] == "accepted"
    taken = b.buffer.take_groups(2, 0, timeout_s=0.1)
    assert sorted(t.id for g in taken for t in g) == sorted(t.id for g in groups for t in g)


def test_done_is_set_only_after_a_checkpoint_of_the_last_step(tmp_path):
    # the driver ends the run once it sees `done`: a learner killed after that must come back
    # at max_steps, not at its last scheduled checkpoint (none here) with the steps since untrained
    svc = service(tmp_path / "resume", max_steps=1, checkpoint_every_steps=100, groups_per_step=1)
    (group,) = rollout(svc.trainer.model, 0, n_groups=1, seed=1)
    assert {v for v, _ in svc.buffer.add_batch(group, 0)} == {"accepted"}
    seen: list = []
    svc.done.set = lambda: seen.append(ResumeStore(tmp_path / "resume").latest())
    svc.train()
    assert [m["step"] for m in svc.metrics] == [1] and svc.error == ""
    (latest,) = seen  # as done was set
    assert latest is not None and latest[1]["step"] == 1 and latest[1]["version"] == svc.version
    svc.train()  # a learner restored at max_steps is done at once, with no second checkpoint
    assert svc.checkpoints.saves == 1 and len(seen) == 2


def test_a_torn_checkpoint_is_never_the_one_resumed(tmp_path):
    store = ResumeStore(tmp_path, keep=3)
    store.save({"n": 1}, version=1, step=1)
    good = store.save({"n": 2}, version=2, step=2)
    # a crash before the marker: the state is there, COMPLETE is not
    no_marker = tmp_path / "v00000003-s00000003"
    no_marker.mkdir()
    (no_marker / STATE).write_bytes(b"\x80partial")
    # a marker naming more bytes than the state holds (cut short)
    short = tmp_path / "v00000004-s00000004"
    short.mkdir()
    (short / STATE).write_bytes(b"\x80cut")
    (short / MARKER).write_text(json.dumps({"version": 4, "step": 4, "bytes": 10_000}))
    # a temp dir of a save in progress
    (tmp_path / ".v00000005-s00000005.abc").mkdir()
    path, marker = store.latest()
    assert path == good and marker["step"] == 2
    assert store.load_latest()["n"] == 2
    store.save({"n": 6}, version=6, step=6)  # the next save clears the torn ones away
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["v00000001-s00000001", "v00000002-s00000002", "v00000006-s00000006"]


def test_restored_weights_get_a_version_past_any_published(tmp_path):
    a = service(tmp_path / "resume")
    a._record(rollout(a.trainer.model, 0, seed=1), 0.0)
    a.checkpoints.save(a)  # at version 1
    a.checkpoints.store.publish_mark(5)  # workers had seen up to 5 when it died
    b = service(tmp_path / "resume")
    assert b.restore_latest()["version"] == 6


def _traj(i):
    return types.SimpleNamespace(id=f"t{i}")


def test_acked_window_keeps_until_durable_and_resends_to_a_new_learner():
    w = AckedWindow(limit=5)
    assert w.on_stream("L1") == []  # the first learner: nothing to re-send
    w.add([_traj(0), _traj(1)], ack_version=3, durable_version=0)
    w.add([_traj(2)], ack_version=4, durable_version=0)
    w.add([_traj(3)], ack_version=2, durable_version=3)  # already durable when acked
    w.forget_below(4)  # a checkpoint at version 4 covers what was acked at 3
    assert len(w) == 1
    assert w.on_stream("L1") == []  # a reconnect to the same learner
    w.add([_traj(i) for i in range(4, 10)], ack_version=5, durable_version=4)
    assert len(w) == 5 and w.overflowed == 2  # bounded: the oldest go first
    again = w.on_stream("L2")
    assert [t.id for t in again] == ["t5", "t6", "t7", "t8", "t9"]
    assert len(w) == 0 and w.stats()["retained_resent"] == 5


def test_resume_of_a_directory_that_is_no_run_is_a_config_error(tmp_path, capsys):
    from rewardloop.cli import main

    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "config.json" in capsys.readouterr().err
