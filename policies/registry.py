"""Selection policies by name: `@register_policy("pvar")` on a class, `make_policy("pvar", **options)`.

make_policy passes a constructor only the options it declares, so the driver can hand over the
whole `selection` config section and each policy picks what it uses.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Callable, TypeVar

from policies.base import SelectionPolicy

_POLICIES: dict[str, type[SelectionPolicy]] = {}

PolicyClass = TypeVar("PolicyClass", bound=type[SelectionPolicy])


def register_policy(name: str) -> Callable[[PolicyClass], PolicyClass]:
    """Class decorator registering a SelectionPolicy subclass under `name`."""

    def decorate(cls: PolicyClass) -> PolicyClass:
        if not (isinstance(cls, type) and issubclass(cls, SelectionPolicy)):
            raise TypeError(f"@register_policy({name!r}) needs a SelectionPolicy subclass, got {cls!r}")
        if name in _POLICIES and _POLICIES[name] is not cls:
            raise ValueError(f"selection policy {name!r} is already registered by {_POLICIES[name].__qualname__}")
        # make_policy filters options by the constructor's parameters; **kwargs would defeat that.
        params = inspect.signature(cls).parameters.values()
        if any(p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) for p in params):
            raise TypeError(f"selection policy {name!r}: the constructor must name its options, not take *args/**kwargs")
        cls.name = name
        _POLICIES[name] = cls
        return cls

    return decorate


def registered_policies() -> tuple[str, ...]:
    """Names of every registered policy, sorted."""
    return tuple(sorted(_POLICIES))


def make_policy(name: str, **options: object) -> SelectionPolicy:
    """Build the policy registered as `name` from the options its constructor accepts.

    Options the constructor does not declare are ignored (the config section holds the options of
    every policy). Unknown names raise ValueError listing the registered names and the nearest one.
    """
    if name not in _POLICIES:
        known = registered_policies()
        nearest = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean {nearest[0]!r}?" if nearest else ""
        raise ValueError(f"unknown selection policy {name!r}.{hint} Registered policies: {', '.join(known)}.")
    cls = _POLICIES[name]
    accepted = inspect.signature(cls).parameters
    return cls(**{key: value for key, value in options.items() if key in accepted})
