"""Selection policies by name: `@register_policy("pvar")` on a class, `make_policy("pvar", settings)`.

make_policy passes a constructor only the options it declares, taken by name from one
`SelectionSettings` (policies/settings.py; the driver builds it once from the `selection` config
section) or from keyword options (tests, benchmarks), so each policy picks what it uses.
"""

from __future__ import annotations

import inspect
from typing import Callable, TypeVar

from actors.registry import Registry
from policies.base import SelectionPolicy
from policies.settings import SelectionSettings

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


def make_policy(name: str, settings: SelectionSettings | None = None, **options: object) -> SelectionPolicy:
    """Build the policy registered as `name`.

    Each constructor parameter is taken by name from `settings` (the driver's, built once from the
    config), then from `options` (tests and benchmarks name single options: `make_policy("pvar",
    top_fraction=0.3)`; with settings too, they replace its values); one that neither gives keeps the
    constructor's default, and an option the constructor does not declare is ignored (one settings
    object serves every policy). Unknown names raise ValueError listing the registered names and the
    nearest one.
    """
    cls = _POLICIES.get(name)
    accepted = inspect.signature(cls).parameters
    given = {} if settings is None else {key: getattr(settings, key) for key in accepted if hasattr(settings, key)}
    given.update((key, value) for key, value in options.items() if key in accepted)
    return cls(**given)
