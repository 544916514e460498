"""Weight payloads survive chunking intact; torn or corrupted streams are refused by name."""

import pytest
import torch

from rewardloop import weight_wire
from rewardloop.errors import InvalidInput


def test_weights_round_trip_in_chunks():
    state = {"a.weight": torch.randn(64, 33), "b.bias": torch.arange(10, dtype=torch.float32)}
    payload = weight_wire.state_dict_to_bytes(state)
    chunks = list(weight_wire.weight_chunks(5, payload, chunk_bytes=1000))
    assert len(chunks) > 2 and all(c.count == len(chunks) for c in chunks)
    version, joined = weight_wire.join_chunks(iter(chunks))
    back = weight_wire.state_dict_from_bytes(joined)
    assert version == 5
    assert torch.equal(back["a.weight"], state["a.weight"]) and torch.equal(
        back["b.bias"], state["b.bias"]
    )


def test_corrupt_or_short_weight_stream_is_rejected():
    payload = weight_wire.state_dict_to_bytes({"w": torch.randn(100)})
    chunks = list(weight_wire.weight_chunks(1, payload, chunk_bytes=100))
    with pytest.raises(InvalidInput, match="count"):
        weight_wire.join_chunks(iter(chunks[:-1]))
    chunks[1].data = b"x" * len(chunks[1].data)
    with pytest.raises(InvalidInput, match="sha256"):
        weight_wire.join_chunks(iter(chunks))
    with pytest.raises(InvalidInput, match="index"):
        weight_wire.join_chunks(iter([chunks[0], chunks[2]]))
