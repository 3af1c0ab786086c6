"""The one table of weight transports (name -> class) and how a config value picks one.

Each transport module registers its class with `@register_transport`; importing the package
(actors/weight_sync/__init__.py) imports them all, so the table is complete before any lookup.
A transport builds itself from the `weight_sync` settings (`WeightTransport.from_settings`), so
this table never branches on a transport's name.
"""

from __future__ import annotations

from actors.settings import WeightSyncSettings

# The name of the object-store transport: 'auto' falls back to it.
OBJECT_STORE = "object_store"

TRANSPORTS: dict[str, type] = {}


def register_transport(cls: type) -> type:
    """Class decorator: the transport becomes available to `make_transport` under `cls.name`."""
    TRANSPORTS[cls.name] = cls
    return cls


def registered_transports() -> tuple[str, ...]:
    return tuple(sorted(TRANSPORTS))


def check_transport_name(name: str) -> None:
    """ValueError listing the registered transports unless `name` is one."""
    if name not in TRANSPORTS:
        raise ValueError(f"unknown weight_sync.transport {name!r}; choose 'auto' or one of "
                         f"{list(registered_transports())}")


def resolve_transport_name(name: str, learner_gpu: bool, generator_gpu: bool) -> str:
    """The concrete transport for a config value: 'auto' broadcasts between GPUs, else uses the object store."""
    if name != "auto":
        return name
    return "broadcast" if learner_gpu and generator_gpu else OBJECT_STORE


def make_transport(name: str, receivers: int = 0, timeout_s: float = 600.0):
    """The transport (a base.WeightTransport) for a concrete name, built by its class from the settings
    (`receivers`: the generator actors; `timeout_s`: how long to wait for them; each reads what it needs)."""
    check_transport_name(name)
    return TRANSPORTS[name].from_settings(WeightSyncSettings(name, timeout_s=timeout_s, receivers=receivers))
