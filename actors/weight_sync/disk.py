"""The disk transport: generators reload the round's safetensors checkpoint (needs a shared filesystem)."""

from __future__ import annotations

import glob
import os

import torch

from actors.weight_sync.base import WeightsHandle, WeightStream, WeightTransport
from actors.weight_sync.registry import register_transport


@register_transport
class DiskTransport(WeightTransport):
    """Fallback: generators reload the round's safetensors checkpoint (needs a shared filesystem)."""

    name = "disk"

    def publish(self, state_dict, version, checkpoint_dir=None):
        if checkpoint_dir is None:
            raise ValueError("the disk transport needs the round's checkpoint folder")
        return WeightsHandle(version=version, transport=self.name, payload=os.path.abspath(checkpoint_dir))

    def receive(self, handle):
        return load_checkpoint_tensors(handle.payload)

    def stream(self, version, checkpoint_dir, device=None):
        return _CheckpointStream(self, version, checkpoint_dir)


class _CheckpointStream(WeightStream):
    """The streamed buckets are the checkpoint's shards, already written: nothing to keep."""

    def add(self, bucket):
        pass

    def finish(self, aliases):
        return self.transport.publish({}, self.version, self.checkpoint_dir)


def load_checkpoint_tensors(folder: str) -> dict[str, torch.Tensor]:
    """Every tensor of an HF safetensors checkpoint folder (sharded or not), on the CPU."""
    from safetensors.torch import load_file

    files = sorted(glob.glob(os.path.join(folder, "*.safetensors")))
    if not files:
        raise FileNotFoundError(f"no .safetensors files in checkpoint folder {folder}")
    state: dict[str, torch.Tensor] = {}
    for path in files:
        state.update(load_file(path))
    return state


