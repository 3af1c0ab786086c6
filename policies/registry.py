"""Selection policies by name: `@register_policy("pvar")` on a class, `make_policy("pvar", **options)`.

A policy declares the options it reads (`SelectionPolicy.Options`, policies/selection_options.py for the
built-in ones); the config validates `selection.policy: {kind: <name>, ...}` into them, and
`make_policy` builds the policy from that Options object (the driver) or from keyword options (tests,
benchmarks: `make_policy("pvar", top_fraction=0.3)`), the rest taking their defaults.
"""

from __future__ import annotations

from typing import Callable, TypeVar

from actors.options import KindOptions, build_choice
from actors.registry import Registry
from policies.base import SelectionPolicy

_POLICIES: Registry[type[SelectionPolicy]] = Registry("selection policy")

PolicyClass = TypeVar("PolicyClass", bound=type[SelectionPolicy])


def register_policy(name: str) -> Callable[[PolicyClass], PolicyClass]:
    """Class decorator registering a SelectionPolicy subclass under `name`."""

    def decorate(cls: PolicyClass) -> PolicyClass:
        if not (isinstance(cls, type) and issubclass(cls, SelectionPolicy)):
            raise TypeError(f"@register_policy({name!r}) needs a SelectionPolicy subclass, got {cls!r}")
        _POLICIES.register(name)(cls)
        cls.name = name
        return cls

    return decorate


def registered_policies() -> tuple[str, ...]:
    """Names of every registered policy, sorted."""
    return _POLICIES.names()


def policy_options(name: str) -> type[KindOptions]:
    """The Options class of the registered policy `name` (ValueError naming the nearest name otherwise)."""
    return _POLICIES.get(name).Options


def make_policy(name: str | KindOptions, learner_beta: float = 0.1, **options: object) -> SelectionPolicy:
    """The policy `name` (or the kind of an Options the config validated) with those options, then keyword
    `options`; the rest keep their defaults. `learner_beta`: the implicit reward's beta where the options
    leave it to the learner. An option the policy does not read, or a bad value, raises ValueError naming it;
    an unknown name raises ValueError naming the nearest registered one."""
    cls, built = build_choice(name, _POLICIES.get, **options)
    return cls(built, learner_beta)
