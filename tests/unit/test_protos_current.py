"""The generated stubs in rewardloop/pb must match protos/ (run `make protos` after editing)."""

from rewardloop.protogen import stale_files


def test_generated_code_is_current():
    assert stale_files() == []
