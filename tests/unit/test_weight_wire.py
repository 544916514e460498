"""Weight payloads survive chunking intact; torn or corrupted streams are refused by name.

The chunk framing and the safetensors layout are written by hand for speed, so they are held
here to the generated protobuf parser and to the safetensors library.
"""

import pickle

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from rewardloop import weight_wire
from rewardloop.errors import InvalidInput
from rewardloop.pb import weights_pb2


def mixed_state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "a.weight": torch.randn(64, 33, generator=g),
        "b.bias": torch.arange(10, dtype=torch.int16),
        "c.scale": torch.tensor(2.5, dtype=torch.bfloat16),  # 0-dim, 2-byte
        "d.empty": torch.zeros(0, 3),
        "e.mask": torch.tensor([True, False, True]),
        "f.t": torch.randn(4, 6, generator=g).t(),  # not contiguous
        "g.f64": torch.randn(3, generator=g, dtype=torch.float64),
    }


def assert_same(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for name, tensor in want.items():
        assert got[name].dtype == tensor.dtype and torch.equal(got[name], tensor), name


def test_weights_round_trip_in_chunks_without_copies():
    state = mixed_state()
    encoded = weight_wire.encode_version(5, state, chunk_bytes=100)
    assert len(encoded.messages) > 2
    version, buf = weight_wire.join_chunks(iter(encoded.messages))
    assert version == 5 and len(buf) == encoded.total_bytes
    assert weight_wire.payload_digest(buf) == encoded.digest
    back = weight_wire.state_dict_from_bytes(buf)
    assert_same(back, state)
    start = torch.frombuffer(buf, dtype=torch.uint8).data_ptr()
    for name in ("a.weight", "b.bias", "f.t", "g.f64"):  # views into the received buffer
        assert start <= back[name].data_ptr() < start + len(buf), name


def test_layout_is_safetensors_both_ways():
    state = mixed_state()
    payload = weight_wire.state_dict_to_bytes(state)
    assert_same(st_load(payload), state)  # the library reads what we write
    theirs = st_save({k: v.contiguous() for k, v in state.items()})
    assert_same(weight_wire.state_dict_from_bytes(bytearray(theirs)), state)  # no-copy path
    assert_same(weight_wire.state_dict_from_bytes(theirs), state)  # read-only bytes: a copy
    encoded = weight_wire.encode_version(1, payload, chunk_bytes=64)  # bytes in, same stream
    assert encoded == weight_wire.encode_version(1, state, chunk_bytes=64)


def test_chunk_framing_matches_the_protobuf_parser():
    for message in weight_wire.encode_version(7, bytes(range(256)) * 3, chunk_bytes=300).messages:
        proto = weights_pb2.WeightChunk.FromString(message)
        head, data = weight_wire.parse_chunk(message)
        assert head == (proto.version, proto.index, proto.count, proto.digest, proto.total_bytes)
        assert bytes(data) == proto.data
    # Canonical field order, a negative int64, fields this version does not know, and a
    # repeated scalar (the last value wins) parse as protobuf parses them.
    proto = weights_pb2.WeightChunk(version=-3, index=2, count=4, data=b"xyz", digest="ab")
    unknown = b"\x48\x96\x01" + b"\x52\x02hi" + b"\x5d\x01\x02\x03\x04" + b"\x61" + bytes(8)
    message = proto.SerializeToString() + unknown + b"\x10\x03"
    head, data = weight_wire.parse_chunk(message)
    assert head == (-3, 3, 4, "ab", 0) and bytes(data) == b"xyz"
    assert weights_pb2.WeightChunk.FromString(message).index == 3
    with pytest.raises(InvalidInput, match="chunk"):
        weight_wire.parse_chunk(proto.SerializeToString()[:-1])  # cut inside a field


def test_corrupt_or_short_weight_stream_is_rejected():
    messages = list(weight_wire.encode_version(1, torch.randn(100).numpy().tobytes(), 100).messages)
    with pytest.raises(InvalidInput, match="count"):
        weight_wire.join_chunks(iter(messages[:-1]))
    with pytest.raises(InvalidInput, match="index"):
        weight_wire.join_chunks(iter([messages[0], messages[2]]))
    with pytest.raises(InvalidInput, match="index"):
        weight_wire.join_chunks(iter(messages[1:]))
    corrupt = bytearray(messages[1])
    corrupt[-1] ^= 0xFF  # the last data byte
    with pytest.raises(InvalidInput, match="digest"):
        weight_wire.join_chunks(iter([messages[0], bytes(corrupt), *messages[2:]]))
    unknown = weights_pb2.WeightChunk(version=1, count=1, data=b"x", total_bytes=1, digest="md5:00")
    with pytest.raises(InvalidInput, match="digest"):  # an algorithm the client does not trust
        weight_wire.join_chunks(iter([unknown.SerializeToString()]))
    huge = weights_pb2.WeightChunk(version=1, count=1, data=b"x", total_bytes=1 << 40)
    with pytest.raises(InvalidInput, match="total_bytes"):  # refused before allocating 1 TiB
        weight_wire.join_chunks(iter([huge.SerializeToString()]))
    other = weight_wire.encode_version(2, b"y" * 400, 100).messages
    with pytest.raises(InvalidInput, match="index"):  # a torn stream: two versions mixed
        weight_wire.join_chunks(iter([messages[0], other[1]]))


def test_bad_payloads_are_refused_by_name():
    with pytest.raises(InvalidInput, match="payload"):
        weight_wire.encode_version(1, b"")
    with pytest.raises(InvalidInput, match="payload"):
        weight_wire.encode_version(1, [1, 2, 3])
    with pytest.raises(InvalidInput, match="cplx"):
        weight_wire.state_dict_to_bytes({"cplx": torch.zeros(2, dtype=torch.complex128)})
    with pytest.raises(InvalidInput, match="payload"):
        weight_wire.state_dict_from_bytes(bytearray(b"\x08" + bytes(7) + b"not json"))


def test_object_store_weights_pickle_as_one_out_of_band_buffer():
    """As Ray pickles (protocol 5, buffers out of band, handed back read-only)."""
    state = mixed_state()
    buffers: list = []
    data = pickle.dumps(
        weight_wire.ObjectStoreWeights(state), protocol=5, buffer_callback=buffers.append
    )
    assert len(buffers) == 1 and len(data) < 1000  # the tensors travel in the one buffer
    shared = [b.raw().toreadonly() for b in buffers]
    back = pickle.loads(data, buffers=shared)
    assert_same(back, state)
    back["a.weight"].add_(1)  # private, writable tensors: the shared buffer is untouched
    assert_same(pickle.loads(data, buffers=shared), state)
