"""A sharded (FSDP2) model's full weights, gathered a bucket at a time and written as a sharded HF checkpoint.

Gathering the whole state dict to rank 0 at once would make rank 0 hold a full CPU copy of the model, and the
checkpoint and the transport copy it again. Here every rank walks the model's state dict in the
same order; each entry is all-gathered (`DTensor.full_tensor`, a collective) and rank 0 keeps it, on the CPU,
until the bucket holds `bucket_bytes`; the bucket then goes to the consumers (a checkpoint shard, the weight
transport's stream) and is dropped. Rank 0's extra memory is one bucket (a larger tensor is a bucket of its own).

A tied parameter (SmolLM2's embedding and lm_head) is gathered and written once, under the first name the model
lists it by; its other names are returned as aliases. The checkpoint is Hugging Face's sharded layout
(`model-0000k-of-0000n.safetensors` and `model.safetensors.index.json`), which `from_pretrained` loads; the
number of shards is known before anything is gathered, from the entries' global shapes. Pure torch, no Ray.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME as INDEX_FILE


@dataclass(frozen=True)
class BucketPlan:
    """The state dict's entries in buckets (names in the model's order), and the aliases of tied entries."""

    buckets: list[list[str]]
    aliases: dict[str, str] = field(default_factory=dict)  # {alias: the name it is gathered under}

    def shard_file(self, index: int) -> str:
        return f"model-{index + 1:05d}-of-{len(self.buckets):05d}.safetensors"


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()  # a DTensor's numel is its global one


def plan_buckets(model: torch.nn.Module, bucket_bytes: int) -> BucketPlan:
    """Cut the model's state dict into buckets of at most `bucket_bytes` (a larger entry alone); same on every rank."""
    state = model.state_dict()
    first: dict[int, str] = {}
    aliases = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        if id(parameter) in first and name in state and first[id(parameter)] in state:
            aliases[name] = first[id(parameter)]
        first.setdefault(id(parameter), name)
    buckets: list[list[str]] = []
    size = bucket_bytes
    for name, tensor in state.items():
        if name in aliases:
            continue
        if size + _nbytes(tensor) > bucket_bytes and (not buckets or buckets[-1]):
            buckets.append([])
            size = 0
        buckets[-1].append(name)
        size += _nbytes(tensor)
    return BucketPlan(buckets, aliases)


def gather_buckets(model: torch.nn.Module, plan: BucketPlan, rank: int) -> Iterator[dict[str, torch.Tensor]]:
    """Each bucket of `plan`, whole and on the CPU, on rank 0 ({} on the others). Collective: every rank iterates
    to the end, in step."""
    from torch.distributed.tensor import DTensor

    state = model.state_dict()
    for names in plan.buckets:
        bucket = {}
        for name in names:
            tensor = state[name].detach()
            if isinstance(tensor, DTensor):
                if tensor.device.type != tensor.device_mesh.device_type:  # CPU-offloaded shards of a GPU mesh
                    tensor = tensor.to(tensor.device_mesh.device_type)
                tensor = tensor.full_tensor()
            if rank == 0:
                bucket[name] = tensor.cpu()
            del tensor
        yield bucket


def write_shard(folder: str, plan: BucketPlan, index: int, bucket: dict[str, torch.Tensor]) -> str:
    """Rank 0: write bucket `index` as its checkpoint shard; returns the file name."""
    from safetensors.torch import save_file

    name = plan.shard_file(index)
    save_file({k: v.contiguous() for k, v in bucket.items()}, os.path.join(folder, name), metadata={"format": "pt"})
    return name


def write_index(folder: str, plan: BucketPlan, total_bytes: int) -> None:
    """Rank 0, after every shard: the index `from_pretrained` reads to find each weight's shard."""
    weight_map = {name: plan.shard_file(i) for i, names in enumerate(plan.buckets) for name in names}
    with open(os.path.join(folder, INDEX_FILE), "w") as f:
        json.dump({"metadata": {"total_size": total_bytes}, "weight_map": weight_map}, f, indent=2, sort_keys=True)
