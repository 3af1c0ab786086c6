"""Selection policies by name: `@register_policy("pvar")` on a class, `make_policy("pvar", **options)`.

make_policy passes a constructor only the options it declares, so the driver can hand over the
whole `selection` config section and each policy picks what it uses.
"""

from __future__ import annotations

import inspect
from typing import Callable, TypeVar

from policies.base import SelectionPolicy
from actors.contracts import Registry

_POLICIES: Registry[type[SelectionPolicy]] = Registry("selection policy")

PolicyClass = TypeVar("PolicyClass", bound=type[SelectionPolicy])


def register_policy(name: str) -> Callable[[PolicyClass], PolicyClass]:
    """Class decorator registering a SelectionPolicy subclass under `name`."""

    def decorate(cls: PolicyClass) -> PolicyClass:
        if not (isinstance(cls, type) and issubclass(cls, SelectionPolicy)):
            raise TypeError(f"@register_policy({name!r}) needs a SelectionPolicy subclass, got {cls!r}")
        # make_policy filters options by the constructor's parameters; **kwargs would defeat that.
        params = inspect.signature(cls).parameters.values()
        if any(p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) for p in params):
            raise TypeError(f"selection policy {name!r}: the constructor must name its options, not take *args/**kwargs")
        _POLICIES.register(name)(cls)
        cls.name = name
        return cls

    return decorate


def registered_policies() -> tuple[str, ...]:
    """Names of every registered policy, sorted."""
    return _POLICIES.names()


def check_policy_name(name: str) -> None:
    """Raise ValueError (naming the nearest registered policy) unless `name` is registered."""
    _POLICIES.get(name)


def make_policy(name: str, **options: object) -> SelectionPolicy:
    """Build the policy registered as `name` from the options its constructor accepts.

    Options the constructor does not declare are ignored (the config section holds the options of
    every policy). Unknown names raise ValueError listing the registered names and the nearest one.
    """
    cls = _POLICIES.get(name)
    accepted = inspect.signature(cls).parameters
    return cls(**{key: value for key, value in options.items() if key in accepted})
