"""The one registry of weight transports (name -> class) and how the config's `weight_sync.transport` picks one.

Each transport module registers its class with `@register_transport`; importing the package
(actors/weight_sync/__init__.py) imports them all, so the table is complete before any lookup.
A transport declares its options as its `Options` (a KindOptions subclass, actors/options.py), which the
config validates `weight_sync.transport: {kind: <name>, ...}` against (`transport_options`), and builds
itself from them (`WeightTransport.from_options`), so this table never branches on a transport's name.
'auto' is the one name that is no class: `resolve_transport` turns it into a concrete transport.
"""

from __future__ import annotations

from actors.options import KindOptions, build_choice
from actors.registry import Registry

# The config's 'auto': broadcast between GPUs, else the object store (resolve_transport).
AUTO = "auto"
# The transports 'auto' resolves to; it takes broadcast's options, since it may become broadcast.
OBJECT_STORE = "object_store"
BROADCAST = "broadcast"

_TRANSPORTS: Registry[type] = Registry("weight-sync transport")


def register_transport(cls: type) -> type:
    """Class decorator: the transport becomes available to `make_transport` under `cls.name`."""
    return _TRANSPORTS.register(cls.name)(cls)


def registered_transports() -> tuple[str, ...]:
    return _TRANSPORTS.names()


def _transport(name: str) -> type:
    """The class of the transport `name`; ValueError naming the nearest registered one ('auto' is none)."""
    try:
        return _TRANSPORTS.get(name)
    except ValueError as error:
        raise ValueError(f"{error} (and {AUTO!r}, resolved by the driver)") from None


def check_transport_name(name: str) -> None:
    """ValueError naming the nearest registered transport unless `name` is one."""
    _transport(name)


def transport_options(name: str) -> type[KindOptions]:
    """The Options class of the transport `name` ('auto': broadcast's); ValueError for an unknown name."""
    return _transport(BROADCAST if name == AUTO else name).Options


def resolve_transport(options: KindOptions, learner_gpu: bool, generator_gpu: bool) -> KindOptions:
    """The options of the concrete transport the config's choice names: 'auto' broadcasts between GPUs, else
    uses the object store, keeping those of its options the resolved transport declares."""
    if options.kind != AUTO:
        return options
    name = BROADCAST if learner_gpu and generator_gpu else OBJECT_STORE
    cls = transport_options(name)
    kept = {key: value for key, value in options.model_dump(exclude={"kind"}).items() if key in cls.model_fields}
    return cls(kind=name, **kept)


def make_transport(name: str | KindOptions, receivers: int = 0, **options: object):
    """The transport (a base.WeightTransport) built by its class from its options: a concrete name, or the
    Options the config validated (resolved: never 'auto'), then keyword `options` (tests, benchmarks:
    `make_transport("broadcast", receivers=2, timeout_s=60)`). `receivers`: the generator actors it serves;
    each transport reads what it needs."""
    cls, built = build_choice(name, _transport, **options)
    return cls.from_options(built, receivers)
