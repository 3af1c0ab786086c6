"""Weight sync: how a new policy's weights travel from the learner to every generator.

One interface, several transports. The learner calls `transport.publish(...)` and hands the
resulting `WeightsHandle` to the driver; generators call `transport.receive(handle)` (through
`apply_weights`) and never branch on which transport made it. `make_transport` builds one by name, from
its options (the config's `weight_sync.transport: {kind: <name>, ...}`, see registry.py):

- object_store: one object in the Ray object store (CPU; zero-copy reads on the learner's node);
- disk: the round's safetensors checkpoint, reloaded (needs a shared filesystem);
- broadcast: a collective broadcast from the learner to every generator over a process group of
  its own (NCCL between GPUs, gloo between CPUs), see actors/weight_sync/broadcast.py.

This module holds the interface (`WeightTransport`, `WeightsHandle`) and `apply_weights`; the
transports live in actors/weight_sync/{object_store,disk,broadcast}.py, the flat-buffer packing in
packing.py, and the one name -> class table in registry.py (importing the package registers them all).

A handle carries a version (the number of completed training rounds behind the weights), so a
generator that was restarted by Ray, or that already holds those weights, knows whether to load.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from actors.options import KindOptions
from actors.weight_sync.packing import join_shared
from actors.weight_sync.registry import make_transport


@dataclass(frozen=True)
class WeightsHandle:
    """Where to find one version of the policy's weights. Small and picklable."""

    version: int
    transport: str
    # object_store: a list of ObjectRefs (one, or one per streamed bucket); disk: a checkpoint folder path;
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
    """One way for weights to travel. A new transport is one subclass in a module of this package, registered
    with `@register_transport` and imported by actors/weight_sync/__init__.py (docs/architecture.md)."""

    name: str
    # Its own options (`weight_sync.transport: {kind: <name>, ...}`), declared once with their defaults and
    # descriptions; a transport without any keeps plain KindOptions.
    Options: ClassVar[type[KindOptions]] = KindOptions
    # Whether `receive` returns tensors a generator's model may adopt as its own instead of copying them
    # (read-only shared views that outlive the call): apply_weights then loads with assign=True.
    adoptable: ClassVar[bool] = False

    @classmethod
    def from_options(cls, options: KindOptions, receivers: int) -> WeightTransport:
        """Build from its `Options` and the number of generator actors it serves (make_transport calls this);
        each transport reads what it uses. The default takes neither."""
        return cls()

    @abstractmethod
    def publish(self, state_dict: dict[str, torch.Tensor], version: int, checkpoint_dir: str | None) -> WeightsHandle:
        """Make `state_dict` reachable by generators; `checkpoint_dir` is the round's saved HF checkpoint."""

    @abstractmethod
    def receive(self, handle: WeightsHandle) -> dict[str, torch.Tensor]:
        """Fetch the weights a handle points to, to be copied into a model (they may be read-only views)."""

    def stream(self, version: int, checkpoint_dir: str | None, device: torch.device | None = None) -> WeightStream:
        """Publish a version handed over a bucket at a time (the fsdp learner's streamed gather,
        actors/kernels/streamed_state.py, whose buckets arrive on the CPU; `device` is where the learner trains,
        for a transport that sends from there). This default, for a transport without a stream of its own,
        collects the buckets and publishes them whole; every built-in transport takes them one by one."""
        return WeightStream(self, version, checkpoint_dir)


class WeightStream:
    """One version's weights, a bucket at a time: `add` each bucket (its tensors are not kept by the caller), then
    `finish` with the aliases of tied entries (they name tensors in earlier buckets) for the handle."""

    def __init__(self, transport: WeightTransport, version: int, checkpoint_dir: str | None):
        self.transport, self.version, self.checkpoint_dir = transport, version, checkpoint_dir
        self._state: dict[str, torch.Tensor] = {}

    def add(self, bucket: dict[str, torch.Tensor]) -> None:
        self._state.update(bucket)

    def finish(self, aliases: dict[str, str]) -> WeightsHandle:
        state, self._state = join_shared(self._state, aliases), {}
        return self.transport.publish(state, self.version, self.checkpoint_dir)


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

    From an adoptable transport (the object store) the model adopts the received tensors instead of
    copying them (load_state_dict(assign=True)): its weights become read-only views of the object,
    shared by every generator on the node, and a sync costs no copy at all. Generators only read their
    weights.
    """
    transport = make_transport(handle.transport)
    state = transport.receive(handle)
    load_state(model, state, handle.version, adopt=transport.adoptable and _can_adopt(model, state))


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], version: int, adopt: bool = False,
               partial: bool = False) -> None:
    """Load `state` (weights version `version`) into `model`; RuntimeError naming the names that do not fit.

    `partial`: `state` holds some of the model's weights (a LoRA sync's merged modules), the rest stay as they
    are; otherwise every weight must be there but a tied lm_head, which a saved state dict holds once.
    """
    missing, unexpected = model.load_state_dict(state, strict=False, assign=adopt)
    # Tied embeddings appear once in a saved state dict; anything else missing is a real mismatch.
    tied = {k for k in missing if k.endswith("lm_head.weight")}
    missing = set() if partial else set(missing) - tied
    if missing or unexpected:
        raise RuntimeError(
            f"weights version {version} do not fit the generator's model: "
            f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
