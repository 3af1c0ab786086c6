"""The object-store transport: the weights as one object in the Ray object store (CPU, zero-copy reads), or one
object per bucket when the learner streams them (fsdp's gather a bucket at a time)."""

from __future__ import annotations

import warnings

import torch

from actors.weight_sync.base import WeightsHandle, WeightStream, WeightTransport
from actors.weight_sync.packing import join_shared, split_shared
from actors.weight_sync.registry import OBJECT_STORE, register_transport


@register_transport
class ObjectStoreTransport(WeightTransport):
    """Weights as one object in the Ray object store: zero-copy reads on the same node."""

    name = OBJECT_STORE
    adoptable = True  # receive returns read-only views of the shared object: the model may keep them

    def publish(self, state_dict, version, checkpoint_dir=None):
        unique, aliases = split_shared(state_dict)
        return WeightsHandle(version=version, transport=self.name, payload=[_put(unique, aliases)])

    def stream(self, version, checkpoint_dir, device=None):
        return _ObjectStoreStream(self, version, checkpoint_dir)

    def receive(self, handle):
        import ray

        unique, aliases = {}, {}
        # One object, or one per streamed bucket (the aliases of tied entries may name tensors of another).
        for stored in ray.get(list(handle.payload)):
            # Zero-copy: the tensors are read-only views of the object store's shared memory, and the one copy
            # is the model's own load (load_state_dict / vLLM's load_weights copy into their parameters).
            # Copying them here as well cost a third of the sync time of SmolLM2 (benchmarks/weight_sync.py).
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                unique.update({k: (torch.from_numpy(v) if not isinstance(v, torch.Tensor) else v)
                               for k, v in stored["arrays"].items()})  # fmt: skip
            aliases.update(stored["aliases"])
        return join_shared(unique, aliases)


def _put(unique: dict[str, torch.Tensor], aliases: dict[str, str]):
    """One object holding `unique` (numpy arrays where numpy has the dtype) and the aliases of shared entries."""
    import ray

    # numpy arrays are stored without pickling and read back zero-copy; bfloat16 has no numpy dtype.
    arrays = {k: (v.detach().cpu().numpy() if v.dtype != torch.bfloat16 else v.detach().cpu()) for k, v in unique.items()}
    return ray.put({"arrays": arrays, "aliases": aliases})


class _ObjectStoreStream(WeightStream):
    """Each bucket its own object as it comes: the learner never holds more than the bucket in hand."""

    def __init__(self, transport, version, checkpoint_dir):
        super().__init__(transport, version, checkpoint_dir)
        self._refs: list = []

    def add(self, bucket):
        self._refs.append(_put(bucket, {}))

    def finish(self, aliases):
        refs = [*self._refs, _put({}, aliases)] if aliases else self._refs
        # A list of references: Ray passes it through task arguments instead of resolving it.
        return WeightsHandle(version=self.version, transport=self.transport.name, payload=refs)
