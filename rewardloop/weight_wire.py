"""Weights on the wire: a state dict <-> safetensors bytes <-> versioned WeightChunk messages.

Every version carries its sha256 so a worker never loads a torn or corrupted payload.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from rewardloop.errors import InvalidInput
from rewardloop.pb import weights_pb2

DEFAULT_CHUNK_BYTES = 1 << 20


def state_dict_to_bytes(state: dict[str, torch.Tensor]) -> bytes:
    """Serialize weights as safetensors (contiguous CPU copies; shared tensors are duplicated)."""
    return st_save({k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()})


def state_dict_from_bytes(data: bytes) -> dict[str, torch.Tensor]:
    return st_load(data)


def weight_chunks(
    version: int, payload: bytes, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> Iterator[weights_pb2.WeightChunk]:
    """Split a safetensors payload into WeightChunk messages (see weights.proto for the order)."""
    digest = hashlib.sha256(payload).hexdigest()
    count = max(1, math.ceil(len(payload) / chunk_bytes))
    for index in range(count):
        yield weights_pb2.WeightChunk(
            version=version,
            index=index,
            count=count,
            data=payload[index * chunk_bytes : (index + 1) * chunk_bytes],
            sha256=digest,
            total_bytes=len(payload),
        )


def join_chunks(chunks: Iterable[weights_pb2.WeightChunk]) -> tuple[int, bytes]:
    """Reassemble one version from its chunks; checks order, count and sha256."""
    parts: list[bytes] = []
    version, count, digest = None, None, None
    for chunk in chunks:
        if version is None:
            version, count, digest = chunk.version, chunk.count, chunk.sha256
        if chunk.version != version or chunk.index != len(parts) or chunk.count != count:
            raise InvalidInput(
                "index", f"chunk {chunk.index} of version {chunk.version} out of order"
            )
        parts.append(chunk.data)
        if len(parts) == count:
            break
    if version is None or len(parts) != count:
        raise InvalidInput("count", "stream ended before the last chunk")
    payload = b"".join(parts)
    if hashlib.sha256(payload).hexdigest() != digest:
        raise InvalidInput("sha256", "payload does not match its digest")
    return int(version), payload
