"""The one table of weight transports (name -> class) and how a config value picks one.

Each transport module registers its class with `@register_transport`; importing the package
(actors/weight_sync/__init__.py) imports them all, so the table is complete before any lookup.
"""

from __future__ import annotations

# The name of the object-store transport: 'auto' falls back to it, and apply_weights adopts its tensors.
OBJECT_STORE = "object_store"

TRANSPORTS: dict[str, type] = {}


def register_transport(cls: type) -> type:
    """Class decorator: the transport becomes available to `make_transport` under `cls.name`."""
    TRANSPORTS[cls.name] = cls
    return cls


def resolve_transport_name(name: str, learner_gpu: bool, generator_gpu: bool) -> str:
    """The concrete transport for a config value: 'auto' broadcasts between GPUs, else uses the object store."""
    if name != "auto":
        return name
    return "broadcast" if learner_gpu and generator_gpu else OBJECT_STORE


def make_transport(name: str, receivers: int = 0, timeout_s: float = 600.0):
    """The transport (a base.WeightTransport) for a concrete name; `receivers` (generator actors) matters
    to 'broadcast' only."""
    classes = TRANSPORTS
    if name not in classes:
        raise ValueError(f"unknown weight_sync.transport {name!r}; choose one of {sorted(classes)}")
    if name == "broadcast":
        return classes[name](receivers=receivers, timeout_s=timeout_s)
    return classes[name]()


