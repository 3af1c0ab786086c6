"""Weights as few, large tensors: tensors sharing storage sent once, and one flat buffer per dtype.

`split_shared` / `join_shared` drop and restore aliases (tied embeddings); `pack_state_dict` /
`unpack_state_dict` lay a state dict out as one contiguous buffer per dtype (the broadcast sends
each buffer in a single collective) and read it back as views.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def split_shared(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors with storage of their own, and {alias: name} for entries that share one (tied embeddings).

    Shared tensors are sent once: SmolLM2's tied embedding is a fifth of the model.
    """
    unique: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    first: dict[tuple, str] = {}
    for name, tensor in state_dict.items():
        key = (tensor.data_ptr(), tensor.dtype, tuple(tensor.shape), tuple(tensor.stride()))
        if key in first:
            aliases[name] = first[key]
        else:
            first[key] = name
            unique[name] = tensor
    return unique, aliases


def sent_bytes(state_dict: dict[str, torch.Tensor]) -> int:
    """Bytes a transport sends for `state_dict`: every tensor once, shared ones (tied embeddings) once in all."""
    return sum(t.numel() * t.element_size() for t in split_shared(state_dict)[0].values())


def join_shared(unique: dict[str, torch.Tensor], aliases: dict[str, str]) -> dict[str, torch.Tensor]:
    return {**unique, **{alias: unique[name] for alias, name in aliases.items()}}


BUFFER_DTYPES = {str(d): d for d in (torch.float32, torch.float16, torch.bfloat16, torch.float64)}


@dataclass(frozen=True)
class TensorSlot:
    """Where one named tensor lives inside its dtype's flat buffer."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int  # elements from the start of the buffer


def pack_state_dict(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[TensorSlot], dict[str, str]]:
    """One contiguous buffer per dtype, the layout to unpack it, and the aliases of shared tensors (sent once)."""
    unique, aliases = split_shared(state_dict)
    slots: list[TensorSlot] = []
    sizes: dict[str, int] = {}
    for name, tensor in unique.items():
        dtype = str(tensor.dtype)
        if dtype not in BUFFER_DTYPES:
            raise TypeError(f"cannot broadcast {name} of dtype {tensor.dtype}; supported: {sorted(BUFFER_DTYPES)}")
        slots.append(TensorSlot(name, dtype, tuple(tensor.shape), sizes.get(dtype, 0)))
        sizes[dtype] = sizes.get(dtype, 0) + tensor.numel()
    device = next(iter(state_dict.values())).device if state_dict else torch.device("cpu")
    buffers = {dtype: torch.empty(size, dtype=BUFFER_DTYPES[dtype], device=device) for dtype, size in sizes.items()}
    for slot in slots:
        tensor = unique[slot.name].detach()
        buffers[slot.dtype][slot.offset : slot.offset + tensor.numel()].copy_(tensor.reshape(-1))
    return buffers, slots, aliases


def unpack_state_dict(buffers: dict[str, torch.Tensor], slots: list[TensorSlot],
                      aliases: dict[str, str]) -> dict[str, torch.Tensor]:
    """Views into the received buffers, by name (no copy)."""
    unique = {slot.name: buffers[slot.dtype][slot.offset : slot.offset + math.prod(slot.shape)].view(slot.shape)
              for slot in slots}  # fmt: skip
    return join_shared(unique, aliases)


