"""bench e2e's CPU figures: a child process's CPU is counted, and summaries carry them."""

import subprocess
import sys
import time

from rewardloop.bench import e2e, e2e_figures

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\ninput()"


def test_the_cpu_of_a_child_process_is_counted():
    before = e2e_figures.descendants_cpu_s()
    child = subprocess.Popen([sys.executable, "-c", BURN], stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120  # a loaded machine: poll until it has burned its 0.3 s
        while e2e_figures.descendants_cpu_s() - before < 0.25 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert e2e_figures.descendants_cpu_s() - before >= 0.25
    finally:
        child.communicate(b"\n", timeout=60)
    assert e2e_figures.descendants_cpu_s() - before < 0.25  # an ended process is not counted


def test_cpu_since_and_the_summary():
    assert e2e_figures.cpu_since(1.0, 3.5) == 2.5
    assert e2e_figures.cpu_since(1.0, None) is None
    run = {"reached": True, "time_to_target_s": 3.0, "seconds": 4.0, "setup_s": 1.0, "steps": 10}
    summary = e2e.summarize([{**run, "cpu_to_target_s": 5.0}, run], cap=600)
    assert summary["cpu_to_target_s"]["median"] == 5.0 and summary["cpu_to_target_s"]["n"] == 1
    assert e2e.summarize([run], cap=600)["cpu_to_target_s"] is None
