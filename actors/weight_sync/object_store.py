"""The object-store transport: the weights as one object in the Ray object store (CPU, zero-copy reads)."""

from __future__ import annotations

import warnings

import torch

from actors.weight_sync.base import WeightsHandle, WeightTransport
from actors.weight_sync.packing import join_shared, split_shared
from actors.weight_sync.registry import OBJECT_STORE, register_transport


@register_transport
class ObjectStoreTransport(WeightTransport):
    """Weights as one object in the Ray object store: zero-copy reads on the same node."""

    name = OBJECT_STORE
    adoptable = True  # receive returns read-only views of the shared object: the model may keep them

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


