"""Weight sync: how a new policy's weights travel from the learner to every generator.

One interface, several transports. The learner calls `transport.publish(...)` and hands the
resulting `WeightsHandle` to the driver; generators call `transport.receive(handle)` (through
`apply_weights`) and never branch on which transport made it. `make_transport` picks one by name;
later transports (NCCL broadcast, CUDA IPC) plug in here.

A handle carries a version (the number of completed training rounds behind the weights), so a
generator that was restarted by Ray, or that already holds those weights, knows whether to load.
"""

from __future__ import annotations

import glob
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class WeightsHandle:
    """Where to find one version of the policy's weights. Small and picklable."""

    version: int
    transport: str
    payload: Any  # object_store: a list holding one ObjectRef; disk: a checkpoint folder path

    def relocated(self, old_folder: str, new_folder: str) -> "WeightsHandle":
        """The same weights after their checkpoint folder moved (a round's partial folder is renamed on commit)."""
        if isinstance(self.payload, str) and os.path.abspath(self.payload).startswith(os.path.abspath(old_folder)):
            moved = os.path.join(os.path.abspath(new_folder), os.path.relpath(self.payload, os.path.abspath(old_folder)))
            return WeightsHandle(self.version, self.transport, moved)
        return self


class WeightTransport(ABC):
    name: str

    @abstractmethod
    def publish(self, state_dict: dict[str, torch.Tensor], version: int, checkpoint_dir: str | None) -> WeightsHandle:
        """Make `state_dict` reachable by generators; `checkpoint_dir` is the round's saved HF checkpoint."""

    @abstractmethod
    def receive(self, handle: WeightsHandle) -> dict[str, torch.Tensor]:
        """Fetch the weights a handle points to as CPU tensors."""


class ObjectStoreTransport(WeightTransport):
    """Weights as one object in the Ray object store: zero-copy reads on the same node."""

    name = "object_store"

    def publish(self, state_dict, version, checkpoint_dir=None):
        import ray

        # numpy arrays are stored without pickling and read back zero-copy; bfloat16 has no numpy dtype.
        arrays = {
            k: (v.detach().cpu().numpy() if v.dtype != torch.bfloat16 else v.detach().cpu())
            for k, v in state_dict.items()
        }
        # Wrapped in a list so Ray passes the reference through task arguments instead of resolving it.
        return WeightsHandle(version=version, transport=self.name, payload=[ray.put(arrays)])

    def receive(self, handle):
        import ray

        arrays = ray.get(handle.payload[0])
        return {k: (torch.from_numpy(v.copy()) if not isinstance(v, torch.Tensor) else v) for k, v in arrays.items()}


class DiskTransport(WeightTransport):
    """Fallback: generators reload the round's safetensors checkpoint (needs a shared filesystem)."""

    name = "disk"

    def publish(self, state_dict, version, checkpoint_dir=None):
        if checkpoint_dir is None:
            raise ValueError("the disk transport needs the round's checkpoint folder")
        return WeightsHandle(version=version, transport=self.name, payload=os.path.abspath(checkpoint_dir))

    def receive(self, handle):
        from safetensors.torch import load_file

        files = sorted(glob.glob(os.path.join(handle.payload, "*.safetensors")))
        if not files:
            raise FileNotFoundError(f"no .safetensors files in checkpoint folder {handle.payload}")
        state: dict[str, torch.Tensor] = {}
        for path in files:
            state.update(load_file(path))
        return state


_TRANSPORTS: dict[str, type[WeightTransport]] = {
    ObjectStoreTransport.name: ObjectStoreTransport,
    DiskTransport.name: DiskTransport,
}


def make_transport(name: str, use_gpu: bool = False) -> WeightTransport:
    """The transport for a config value; 'auto' chooses from the topology."""
    if name == "auto":
        name = ObjectStoreTransport.name  # CPU clusters; GPU transports arrive with the vLLM backend
    try:
        return _TRANSPORTS[name]()
    except KeyError:
        raise ValueError(f"unknown weight_sync.transport {name!r}; choose one of {sorted(_TRANSPORTS)}") from None


def apply_weights(model: torch.nn.Module, handle: WeightsHandle) -> None:
    """Load the weights behind `handle` into `model` in place (tied weights are handled by strict=False)."""
    transport = _TRANSPORTS[handle.transport]()
    state = transport.receive(handle)
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Tied embeddings appear once in a saved state dict; anything else missing is a real mismatch.
    tied = {k for k in missing if k.endswith("lm_head.weight")}
    if set(missing) - tied or unexpected:
        raise RuntimeError(
            f"weights version {handle.version} do not fit the generator's model: "
            f"missing {sorted(set(missing) - tied)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
