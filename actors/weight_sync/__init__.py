"""Weight sync: how a new policy's weights travel from the learner to every generator.

base.py: the interface, `WeightsHandle` and `apply_weights`; registry.py: the transports by name, their
options (`transport_options`, what the config's `weight_sync.transport` validates against), 'auto'
(`resolve_transport`) and `make_transport`; object_store.py, disk.py, broadcast.py: the transports, each
with its `Options`; packing.py: shared tensors and flat buffers. Importing the package registers every
transport.
"""

from actors.weight_sync.base import WeightsHandle, WeightTransport, apply_weights
from actors.weight_sync.registry import (
    check_transport_name,
    make_transport,
    register_transport,
    registered_transports,
    resolve_transport,
    transport_options,
)

# Each module registers its transport class on import.
from actors.weight_sync.object_store import ObjectStoreTransport  # noqa: E402  isort: skip
from actors.weight_sync.disk import DiskTransport, load_checkpoint_tensors  # noqa: E402  isort: skip
from actors.weight_sync.broadcast import BroadcastOptions, BroadcastTransport  # noqa: E402  isort: skip

__all__ = [
    "BroadcastOptions", "BroadcastTransport", "DiskTransport", "ObjectStoreTransport", "WeightTransport",
    "WeightsHandle", "apply_weights", "check_transport_name", "load_checkpoint_tensors", "make_transport", "register_transport",
    "registered_transports", "resolve_transport", "transport_options",
]
