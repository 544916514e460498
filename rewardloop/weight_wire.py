"""Weights on the wire: a state dict <-> safetensors bytes <-> versioned WeightChunk messages.

Every version carries a digest (xxh3_128 by default) so a worker never loads a torn or corrupted payload. The code
is shaped by where the time went (100 MB on 2 cores, bench/README.md `weights`): hashing,
slicing and protobuf copies per subscriber cost 5x the transfer itself. So:

- **Encode once per version** (`encode_version`, called by `WeightServer.publish`): one pass
  hashes the payload, one copy writes the serialized WeightChunk messages. Every subscriber is
  sent those same bytes (the server's handler has an identity serializer).
- **One copy from tensors.** `state_dict_to_bytes` and `encode_version(state)` write the
  safetensors layout straight from each tensor's memory; a state dict goes into the chunk
  messages without an intermediate payload. (A GPU tensor is first moved to the CPU once.)
- **Chunk framing.** A message is `meta` (every WeightChunk field except `data`, serialized by
  protobuf) followed by the `data` field (tag 4, length, bytes): protobuf merges concatenated
  fields, so it is an ordinary WeightChunk to any parser. `parse_chunk` reads the six fields
  itself to get `data` as a memoryview, skipping the two copies `WeightChunk.FromString(...)
  .data` makes; tests hold it to the generated parser.
- **Receive into one buffer.** `join_chunks` writes each chunk into one preallocated buffer
  (numpy, so large buffers get huge pages: 18 vs 50 ms of page faults per 100 MB) and feeds
  the digest as chunks arrive. The digest is xxh3_128, not sha256: it still catches torn or
  corrupted payloads, and hashes 100 MB in ~9 ms instead of ~86 ms, which was as long as the
  raw transfer; sha256 is still accepted from a learner that sends it.
- **Decode without copying.** `state_dict_from_bytes` of a writable buffer returns tensors
  that view it (tensors are laid out largest element first, so every view is aligned).
- **The Ray object store gets one buffer too** (`ObjectStoreWeights`): one out-of-band numpy
  buffer instead of a pickled storage per tensor (100 MB: put + get 268 -> 185 ms).
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import xxhash
from safetensors.torch import load as st_load

from rewardloop.errors import InvalidInput
from rewardloop.grpc_util import MAX_MESSAGE_BYTES
from rewardloop.pb import weights_pb2

DEFAULT_CHUNK_BYTES = 1 << 20
DIGESTS = {"xxh3_128": xxhash.xxh3_128, "sha256": hashlib.sha256}
"""Digest algorithms a WeightChunk may name (see weights.proto); the first is the default."""
DEFAULT_DIGEST = "xxh3_128"
_SERVICE = weights_pb2.DESCRIPTOR.services_by_name["WeightService"]
SERVICE_NAME = _SERVICE.full_name
SUBSCRIBE_METHOD = f"/{SERVICE_NAME}/Subscribe"
"""The gRPC method path of WeightService.Subscribe (both ends register it by hand)."""

_DTYPES = {  # torch dtype <-> safetensors dtype name
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
_BY_NAME = {name: dtype for dtype, name in _DTYPES.items()}
_HEADER_LEN = struct.Struct("<Q")
_DATA_TAG = b"\x22"  # field 4 (`data`), wire type 2 (length-delimited)
Buffer = bytes | bytearray | memoryview


# ---- state dict <-> safetensors --------------------------------------------------------


def _layout(state: Mapping[str, torch.Tensor]) -> list[memoryview]:
    """The safetensors file as pieces: [8-byte length + JSON header, each tensor's bytes]."""
    entries = sorted(state.items(), key=lambda kv: (-kv[1].element_size(), kv[0]))
    header: dict[str, dict] = {}
    pieces: list[memoryview] = []
    offset = 0
    for name, tensor in entries:
        if tensor.dtype not in _DTYPES:
            raise InvalidInput(f"state[{name!r}]", f"dtype {tensor.dtype} cannot be sent")
        t = tensor.detach()
        if t.device.type != "cpu":
            t = t.to("cpu")  # the one device -> host copy
        raw = memoryview(t.contiguous().reshape(-1).view(torch.uint8).numpy())
        end = offset + raw.nbytes
        header[name] = {
            "dtype": _DTYPES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, end],
        }
        pieces.append(raw)
        offset = end
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # tensors start 8-aligned, as safetensors writes them
    return [memoryview(_HEADER_LEN.pack(len(text)) + text), *pieces]


def state_dict_to_bytes(state: Mapping[str, torch.Tensor]) -> bytes:
    """Serialize weights as safetensors, copying each tensor's memory once (shared tensors twice)."""
    return b"".join(_layout(state))


def state_dict_from_bytes(data: Buffer | np.ndarray) -> dict[str, torch.Tensor]:
    """Decode safetensors bytes. The tensors of a writable buffer (what `join_chunks` returns)
    view that buffer, no copy; a read-only one is copied once first, so tensors are private."""
    if sys.byteorder != "little":
        return st_load(bytes(data))
    view = memoryview(data).cast("B")
    if view.readonly:  # e.g. bytes, or a buffer in Ray's shared memory: one private copy
        view = memoryview(np.frombuffer(view, dtype=np.uint8).copy())
    try:
        (size,) = _HEADER_LEN.unpack(view[:8])
        base = 8 + size
        header = json.loads(bytes(view[8:base]))
        return {
            name: _tensor_view(view, base, info)
            for name, info in header.items()
            if name != "__metadata__"
        }
    except InvalidInput:
        raise
    except (struct.error, ValueError, TypeError, KeyError) as exc:
        raise InvalidInput("payload", f"not a safetensors file ({exc})") from exc


def _tensor_view(view: memoryview, base: int, info: dict) -> torch.Tensor:
    dtype, shape = _BY_NAME[info["dtype"]], [int(n) for n in info["shape"]]
    start, end = (int(x) for x in info["data_offsets"])
    itemsize = dtype.itemsize
    numel = math.prod(shape)
    if not 0 <= start <= end <= len(view) - base or end - start != numel * itemsize:
        raise InvalidInput("payload", f"tensor data_offsets {[start, end]} do not fit its shape")
    if numel == 0:
        return torch.empty(shape, dtype=dtype)
    if (base + start) % itemsize:  # written by someone who does not align: copy this one
        return torch.frombuffer(bytearray(view[base + start : base + end]), dtype=dtype).view(shape)
    return torch.frombuffer(view, dtype=dtype, count=numel, offset=base + start).view(shape)


class ObjectStoreWeights:
    """A state dict packed for the Ray object store as one contiguous safetensors buffer.

    `ray.put(ObjectStoreWeights(state))` pickles as that one numpy array, which pickle protocol
    5 hands to Ray out of band (one copy into shared memory, instead of pickling every tensor's
    storage through torch.save), and `ray.get` unpickles it straight into a plain state dict
    (one copy out of shared memory; the tensors are private and writable)."""

    __slots__ = ("buffer",)

    def __init__(self, state: Mapping[str, torch.Tensor]):
        self.buffer = np.frombuffer(state_dict_to_bytes(state), dtype=np.uint8)

    def __reduce__(self):
        return (state_dict_from_bytes, (self.buffer,))


# ---- one version -> serialized WeightChunk messages (once per version) -----------------


@dataclass(frozen=True)
class EncodedVersion:
    """One version, encoded once: the serialized WeightChunk messages, in stream order."""

    version: int
    messages: tuple[bytes, ...]
    digest: str
    total_bytes: int


def encode_version(
    version: int,
    weights: Buffer | Mapping[str, torch.Tensor],
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    digest_algorithm: str = DEFAULT_DIGEST,
) -> EncodedVersion:
    """Hash `weights` (safetensors bytes, or a state dict to lay out as safetensors) and cut it
    into serialized WeightChunk messages of `chunk_bytes` of data each (see weights.proto)."""
    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes: must be >= 1, got {chunk_bytes}")
    if isinstance(weights, Mapping):
        pieces = [p for p in _layout(weights) if p.nbytes]
    elif isinstance(weights, bytes | bytearray | memoryview):
        pieces = [memoryview(weights).cast("B")]
    else:
        raise InvalidInput(
            "payload", f"must be safetensors bytes or a state dict, not {type(weights).__name__}"
        )
    total = sum(p.nbytes for p in pieces)
    if total == 0:
        raise InvalidInput("payload", "must be non-empty")
    if digest_algorithm not in DIGESTS:
        raise ValueError(f"digest_algorithm: use one of {sorted(DIGESTS)}")
    hasher = DIGESTS[digest_algorithm]()
    for piece in pieces:
        hasher.update(piece)
    digest = f"{digest_algorithm}:{hasher.hexdigest()}"
    count = math.ceil(total / chunk_bytes)
    messages, at, offset = [], 0, 0  # at: current piece, offset: position inside it
    for index in range(count):
        want = min(chunk_bytes, total - index * chunk_bytes)
        meta = weights_pb2.WeightChunk(
            version=version, index=index, count=count, digest=digest, total_bytes=total
        ).SerializeToString()
        parts: list[Buffer] = [meta, _DATA_TAG, _varint(want)]
        while want:
            take = min(want, pieces[at].nbytes - offset)
            parts.append(pieces[at][offset : offset + take])
            want -= take
            offset += take
            if offset == pieces[at].nbytes:
                at, offset = at + 1, 0
        messages.append(b"".join(parts))
    return EncodedVersion(version, tuple(messages), digest, total)


# ---- serialized WeightChunk messages -> one verified buffer ----------------------------


class ChunkHead(NamedTuple):
    """Every WeightChunk field but `data`."""

    version: int
    index: int
    count: int
    digest: str
    total_bytes: int


def parse_chunk(message: Buffer) -> tuple[ChunkHead, memoryview]:
    """Parse a serialized WeightChunk (any field order, unknown fields skipped, last value of a
    repeated scalar wins, as protobuf does); `data` comes back as a view of `message`."""
    view = memoryview(message).cast("B")
    values = {1: 0, 2: 0, 3: 0, 5: b"", 6: 0}
    data, pos, end = view[:0], 0, len(view)
    while pos < end:
        key, pos = _read_varint(view, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(view, pos)
            if field in (1, 2, 3, 6):
                values[field] = value
        elif wire == 2:
            size, pos = _read_varint(view, pos)
            if pos + size > end:
                raise InvalidInput("chunk", "truncated length-delimited field")
            if field == 4:
                data = view[pos : pos + size]
            elif field == 5:
                values[5] = bytes(view[pos : pos + size])
            pos += size
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise InvalidInput("chunk", f"unsupported wire type {wire} (field {field})")
    if pos != end:
        raise InvalidInput("chunk", "truncated fixed-width field")
    version = values[1] - (1 << 64) if values[1] >> 63 else values[1]  # int64, two's complement
    try:
        digest = values[5].decode()
    except UnicodeDecodeError as exc:
        raise InvalidInput("digest", "not UTF-8") from exc
    head = ChunkHead(version, values[2] & 0xFFFFFFFF, values[3] & 0xFFFFFFFF, digest, values[6])
    return head, data


def join_chunks(messages: Iterable[Buffer]) -> tuple[int, memoryview]:
    """Reassemble one version from serialized WeightChunk messages into one new writable
    buffer; checks order, count, sizes and the digest (fed as the chunks arrive)."""
    first: ChunkHead | None = None
    buf = memoryview(b"")
    hasher = None
    got = received = 0
    for message in messages:
        head, data = parse_chunk(message)
        if first is None:
            if head.index != 0 or head.count < 1 or head.total_bytes < 1:
                raise InvalidInput(
                    "index", f"stream starts with chunk {head.index} of {head.count}"
                )
            if head.total_bytes > head.count * MAX_MESSAGE_BYTES:  # before allocating it
                raise InvalidInput("total_bytes", f"{head.total_bytes} for {head.count} chunks")
            first = head
            hasher = _hasher(head.digest)
            buf = memoryview(np.empty(head.total_bytes, dtype=np.uint8))
        elif head._replace(index=0) != first or head.index != received:
            raise InvalidInput(
                "index", f"chunk {head.index} of version {head.version} out of order"
            )
        if got + len(data) > first.total_bytes:
            raise InvalidInput("total_bytes", f"chunks exceed total_bytes {first.total_bytes}")
        buf[got : got + len(data)] = data
        hasher.update(buf[got : got + len(data)])  # just written, still in cache
        got += len(data)
        received += 1
        if received == first.count:
            break
    if first is None or received != first.count:
        raise InvalidInput("count", "stream ended before the last chunk")
    if got != first.total_bytes:
        raise InvalidInput("total_bytes", f"got {got} bytes, expected {first.total_bytes}")
    if f"{first.digest.partition(':')[0]}:{hasher.hexdigest()}" != first.digest:
        raise InvalidInput("digest", "payload does not match its digest")
    return first.version, buf


def _hasher(digest: str):
    """A fresh hasher for the algorithm a chunk's "<algorithm>:<hex>" digest names."""
    algorithm, sep, hex_digest = digest.partition(":")
    if not sep or algorithm not in DIGESTS or not hex_digest:
        raise InvalidInput("digest", f"must be '<algorithm>:<hex>' with one of {sorted(DIGESTS)}")
    return DIGESTS[algorithm]()


def payload_digest(payload, algorithm: str = DEFAULT_DIGEST) -> str:
    """The "<algorithm>:<hex>" digest a learner puts on every chunk of `payload`."""
    return f"{algorithm}:{DIGESTS[algorithm](payload).hexdigest()}"


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(view: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(view) or shift > 63:
            raise InvalidInput("chunk", "truncated or overlong varint")
        byte = view[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value & ((1 << 64) - 1), pos
        shift += 7
