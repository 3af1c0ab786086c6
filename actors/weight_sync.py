"""Weight sync: how a new policy's weights travel from the learner to every generator.

One interface, several transports. The learner calls `transport.publish(...)` and hands the
resulting `WeightsHandle` to the driver; generators call `transport.receive(handle)` (through
`apply_weights`) and never branch on which transport made it. `make_transport` picks one by name:

- object_store: one object in the Ray object store (CPU; zero-copy reads on the learner's node);
- disk: the round's safetensors checkpoint, reloaded (needs a shared filesystem);
- broadcast: a collective broadcast from the learner to every generator over a process group of
  its own (NCCL between GPUs, gloo between CPUs), see actors/broadcast_transport.py.

A handle carries a version (the number of completed training rounds behind the weights), so a
generator that was restarted by Ray, or that already holds those weights, knows whether to load.
"""

from __future__ import annotations

import glob
import os
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class WeightsHandle:
    """Where to find one version of the policy's weights. Small and picklable."""

    version: int
    transport: str
    # object_store: a list holding one ObjectRef; disk: a checkpoint folder path;
    # broadcast: a dict with the rendezvous, the tensor layout and a "checkpoint" folder to fall back to.
    payload: Any

    def relocated(self, old_folder: str, new_folder: str) -> "WeightsHandle":
        """The same weights after their checkpoint folder moved (a round's partial folder is renamed on commit)."""
        if isinstance(self.payload, dict) and isinstance(self.payload.get("checkpoint"), str):
            moved = _relocate_path(self.payload["checkpoint"], old_folder, new_folder)
            return WeightsHandle(self.version, self.transport, {**self.payload, "checkpoint": moved})
        if isinstance(self.payload, str):
            return WeightsHandle(self.version, self.transport, _relocate_path(self.payload, old_folder, new_folder))
        return self


def _relocate_path(path: str, old_folder: str, new_folder: str) -> str:
    old = os.path.abspath(old_folder)
    if os.path.abspath(path).startswith(old):
        return os.path.join(os.path.abspath(new_folder), os.path.relpath(path, old))
    return path


class WeightTransport(ABC):
    name: str

    @abstractmethod
    def publish(self, state_dict: dict[str, torch.Tensor], version: int, checkpoint_dir: str | None) -> WeightsHandle:
        """Make `state_dict` reachable by generators; `checkpoint_dir` is the round's saved HF checkpoint."""

    @abstractmethod
    def receive(self, handle: WeightsHandle) -> dict[str, torch.Tensor]:
        """Fetch the weights a handle points to, to be copied into a model (they may be read-only views)."""


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


def join_shared(unique: dict[str, torch.Tensor], aliases: dict[str, str]) -> dict[str, torch.Tensor]:
    return {**unique, **{alias: unique[name] for alias, name in aliases.items()}}


class ObjectStoreTransport(WeightTransport):
    """Weights as one object in the Ray object store: zero-copy reads on the same node."""

    name = "object_store"

    def publish(self, state_dict, version, checkpoint_dir=None):
        import ray

        unique, aliases = split_shared(state_dict)
        # numpy arrays are stored without pickling and read back zero-copy; bfloat16 has no numpy dtype.
        arrays = {
            k: (v.detach().cpu().numpy() if v.dtype != torch.bfloat16 else v.detach().cpu())
            for k, v in unique.items()
        }
        # Wrapped in a list so Ray passes the reference through task arguments instead of resolving it.
        return WeightsHandle(version=version, transport=self.name, payload=[ray.put({"arrays": arrays, "aliases": aliases})])

    def receive(self, handle):
        import ray

        stored = ray.get(handle.payload[0])
        # Zero-copy: the tensors are read-only views of the object store's shared memory, and the one copy
        # is the model's own load (load_state_dict / vLLM's load_weights copy into their parameters).
        # Copying them here as well cost a third of the sync time of SmolLM2 (benchmarks/weight_sync.py).
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            unique = {k: (torch.from_numpy(v) if not isinstance(v, torch.Tensor) else v)
                      for k, v in stored["arrays"].items()}  # fmt: skip
        return join_shared(unique, stored["aliases"])


class DiskTransport(WeightTransport):
    """Fallback: generators reload the round's safetensors checkpoint (needs a shared filesystem)."""

    name = "disk"

    def publish(self, state_dict, version, checkpoint_dir=None):
        if checkpoint_dir is None:
            raise ValueError("the disk transport needs the round's checkpoint folder")
        return WeightsHandle(version=version, transport=self.name, payload=os.path.abspath(checkpoint_dir))

    def receive(self, handle):
        return load_checkpoint_tensors(handle.payload)


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


def resolve_transport_name(name: str, learner_gpu: bool, generator_gpu: bool) -> str:
    """The concrete transport for a config value: 'auto' broadcasts between GPUs, else uses the object store."""
    if name != "auto":
        return name
    return "broadcast" if learner_gpu and generator_gpu else ObjectStoreTransport.name


def _transport_classes() -> dict[str, type[WeightTransport]]:
    from actors.broadcast_transport import BroadcastTransport

    return {cls.name: cls for cls in (ObjectStoreTransport, DiskTransport, BroadcastTransport)}


def make_transport(name: str, receivers: int = 0, timeout_s: float = 600.0) -> WeightTransport:
    """The transport for a concrete name; `receivers` (generator actors) matters to 'broadcast' only."""
    classes = _transport_classes()
    if name not in classes:
        raise ValueError(f"unknown weight_sync.transport {name!r}; choose one of {sorted(classes)}")
    if name == "broadcast":
        return classes[name](receivers=receivers, timeout_s=timeout_s)
    return classes[name]()


def _can_adopt(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    """Whether the received tensors can become the model's own: same device and dtype for every entry."""
    current = model.state_dict()
    return all(
        name in current and tensor.device == current[name].device and tensor.dtype == current[name].dtype
        and tensor.shape == current[name].shape
        for name, tensor in state.items()
    )  # fmt: skip


def apply_weights(model: torch.nn.Module, handle: WeightsHandle) -> None:
    """Load the weights behind `handle` into `model` (tied weights are handled by strict=False).

    From the object store the model adopts the received tensors instead of copying them
    (load_state_dict(assign=True)): its weights become read-only views of the object, shared by every
    generator on the node, and a sync costs no copy at all. Generators only read their weights.
    """
    state = make_transport(handle.transport).receive(handle)
    adopt = handle.transport == ObjectStoreTransport.name and _can_adopt(model, state)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=adopt)
    # Tied embeddings appear once in a saved state dict; anything else missing is a real mismatch.
    tied = {k for k in missing if k.endswith("lm_head.weight")}
    if set(missing) - tied or unexpected:
        raise RuntimeError(
            f"weights version {handle.version} do not fit the generator's model: "
            f"missing {sorted(set(missing) - tied)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
