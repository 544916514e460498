"""`rewardloop worker`: its arguments, and the address it needs before it loads anything."""

from __future__ import annotations

import pytest

from rewardloop.cli import build_parser, main


def test_worker_arguments_parse():
    args = build_parser().parse_args(
        ["worker", "--learner", "h:1", "--weights", "h:2", "--max-generations", "3"]
    )
    assert (args.learner, args.weights, args.max_generations) == ("h:1", "h:2", 3)
    assert args.reconnect_s == 30.0 and args.worker_id is None and args.run_dir is None


@pytest.mark.parametrize(
    "argv",
    [
        ["worker"],  # no learner at all
        ["worker", "--learner", "h:1"],  # no weights address
        ["worker", "--run-dir", "runs/x", "--learner", "h:1", "--weights", "h:2"],  # both
    ],
)
def test_worker_without_one_clear_learner_address_is_a_config_error(argv, capsys):
    assert main(argv) == 2
    assert "--run-dir DIR, or --learner HOST:PORT --weights HOST:PORT" in capsys.readouterr().err
