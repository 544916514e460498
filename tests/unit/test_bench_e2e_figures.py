"""bench e2e's CPU figures: a child process's CPU is counted, and summaries carry them."""

import subprocess
import sys
import time

from rewardloop.bench import e2e, e2e_figures

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\ninput()"


def _other() -> float:
    """CPU of the descendants that are none of a run's known kinds: a plain python child is
    counted here, while other tests' processes (a session's Ray, still burning CPU) are not."""
    return e2e_figures.cpu_by_component(driver_cpu_s=0.0).get("other", 0.0)


def test_the_cpu_of_a_child_process_is_counted():
    before = _other()
    child = subprocess.Popen([sys.executable, "-c", BURN], stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120  # a loaded machine: poll until it has burned its 0.3 s
        while _other() - before < 0.25 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _other() - before >= 0.25
    finally:
        child.communicate(b"\n", timeout=60)
    assert _other() - before < 0.25  # an ended process is not counted


def test_cpu_since_and_the_summary():
    assert e2e_figures.cpu_since(1.0, 3.5) == 2.5
    assert e2e_figures.cpu_since(1.0, None) is None
    run = {"reached": True, "time_to_target_s": 3.0, "seconds": 4.0, "setup_s": 1.0, "steps": 10}
    summary = e2e.summarize([{**run, "cpu_to_target_s": 5.0}, run], cap=600)
    assert summary["cpu_to_target_s"]["median"] == 5.0 and summary["cpu_to_target_s"]["n"] == 1
    assert e2e.summarize([run], cap=600)["cpu_to_target_s"] is None


def test_cpu_by_component_names_a_child_and_sums_to_the_total():
    before = _other()
    child = subprocess.Popen([sys.executable, "-c", BURN], stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while _other() - before < 0.25 and time.monotonic() < deadline:
            time.sleep(0.05)
        by = e2e_figures.cpu_by_component(driver_cpu_s=1.5)
        assert by["driver"] == 1.5
        assert by["other"] - before >= 0.25  # a plain python child is none of a run's known kinds
        assert abs(sum(by.values()) - 1.5 - e2e_figures.descendants_cpu_s()) < 0.1
    finally:
        child.communicate(b"\n", timeout=60)


def test_component_medians_over_reached_runs():
    def run(learner: float, reached: bool = True) -> dict:
        phases = {"setup": {"driver": 1.0}, "training": {"learner": learner}}
        return {
            "reached": reached,
            "cpu_by_component": {**phases, "to_target": {"learner": learner}},
        }

    medians = e2e_figures.component_medians([run(1.0), run(3.0), run(2.0), run(99.0, False)])
    assert medians["training"] == {"learner": 2.0} and medians["setup"] == {"driver": 1.0}
    assert e2e_figures.component_medians([{"reached": True}]) is None


def test_every_system_gets_the_same_settings():
    from rewardloop.bench import minimal_grpo
    from rewardloop.config import load_config

    args = e2e.parse_args(["--set", "learner.max_staleness=0", "--max-steps", "123"])
    fn, (overrides, target) = e2e.child_call("rewardloop", 4, args)
    cfg = load_config(None, overrides)
    assert fn is e2e.child_rewardloop and target == 0.85
    assert (cfg.seed, cfg.learner.max_staleness, cfg.learner.max_steps) == (4, 0, 123)
    fn, (argv,) = e2e.child_call("minimal", 4, args)
    peer = minimal_grpo.parse_args(argv)
    assert fn is e2e.child_minimal and (peer.seed, peer.max_steps, peer.lr) == (
        4,
        123,
        cfg.learner.lr,
    )
    assert peer.eval_samples == 7 * cfg.eval.samples_per_prompt == 49  # 7 held-out prompts
    assert (peer.group_size, peer.max_new_tokens) == (
        cfg.rollout.group_size,
        cfg.rollout.max_new_tokens,
    )
