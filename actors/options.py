"""Typed options, and the one config shape of every pluggable choice.

`StrictModel` is the base of every config section and every options model: unknown keys are errors,
values are validated on assignment. Each field is declared once, with its type, default, bounds and
description, where the piece that reads it lives; the config (cluster/config/) composes them.

A pluggable choice (a selection policy, a query selector, a prompt scheduler, a generation backend, a
weight-sync transport, a learner strategy) is written the same way everywhere:

    selection:
      policy: {kind: pvar, top_fraction: 0.3}     # or just `policy: pvar` for the defaults

`kind` names a registered implementation; the other keys are that implementation's own options, its
`Options` class (a `KindOptions` subclass, declared beside the implementation and registered with it).
`choice(...)` makes the config field: it validates the mapping (or the bare name) into the kind's
Options, so an option another kind reads is refused with the name of the key, and a plug-in brings its
options with it: nothing in the config has to change when one is added.

Pure: pydantic only, nothing of the project, so policies/ and actors/ may import it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SerializeAsAny


class StrictModel(BaseModel):
    """Base for every config section and options model: unknown keys are errors, assignments validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class KindOptions(StrictModel):
    """The options of one kind of a pluggable choice; subclasses add the kind's own fields."""

    kind: str = Field(..., description="The registered implementation this choice picks.")


# kind name -> its Options class; raises ValueError (naming the nearest registered kind) for an unknown one.
OptionsLookup = Callable[[str], type[KindOptions]]

Implementation = TypeVar("Implementation")


def build_choice(name_or_options: str | KindOptions, implementation_of: Callable[[str], Implementation],
                 **overrides: Any) -> tuple[Implementation, KindOptions]:
    """The registered implementation of a kind and its options, with one registry lookup (`implementation_of`:
    a registry's `get`; an implementation declaring no `Options` takes plain KindOptions). `name_or_options` is a kind's name or
    the Options the config validated; the options are that Options' values, then `overrides` (tests:
    `make_policy("pvar", top_fraction=0.3)`), the rest their defaults."""
    if isinstance(name_or_options, KindOptions):
        name, overrides = name_or_options.kind, {**name_or_options.model_dump(exclude={"kind"}), **overrides}
    else:
        name = name_or_options
    implementation = implementation_of(name)
    return implementation, getattr(implementation, "Options", KindOptions)(kind=name, **overrides)


def _resolver(what: str, options_of: OptionsLookup, default: str) -> Callable[[Any], Any]:
    def resolve(value: Any) -> Any:
        if isinstance(value, KindOptions):
            return value
        if isinstance(value, str):
            value = {"kind": value}
        if not isinstance(value, dict):
            raise ValueError(f"give the {what} as a mapping with `kind: <registered name>` and its options "
                             f"(or just the name), not {value!r}")
        # Options set without a kind (`selection.policy.top_fraction=0.3` on the defaults) are the default kind's.
        value = {"kind": default, **value}
        if not isinstance(value["kind"], str):
            raise ValueError(f"the {what}'s kind must be a registered name, not {value['kind']!r}")
        return options_of(value["kind"]).model_validate(value)

    return resolve


@dataclass(frozen=True)
class ChoiceInfo:
    """Kept in a choice field's metadata, so tools (the config's error messages, its reference page) can
    find the options of each kind."""

    what: str
    options_of: OptionsLookup
    default: str
    kinds: Callable[[], Iterable[str]] | None = None  # the registered names, for the reference page


def choice(what: str, options_of: OptionsLookup, default: str,
           kinds: Callable[[], Iterable[str]] | None = None) -> Any:
    """The annotation of a config field that picks one registered `what` (e.g. "query selector") by `kind`;
    `default` is the kind of a mapping that names none; `kinds` lists the registered names."""
    return Annotated[SerializeAsAny[KindOptions], BeforeValidator(_resolver(what, options_of, default)),
                     ChoiceInfo(what, options_of, default, kinds)]


def choice_info(field: Any) -> ChoiceInfo | None:
    """The ChoiceInfo of a pydantic FieldInfo, or None when the field is no choice."""
    return next((item for item in field.metadata if isinstance(item, ChoiceInfo)), None)


def lazy(module: str, name: str) -> Callable[..., Any]:
    """`module.name`, imported at its first call: a config section names a registry's lookup without importing
    the registry (and what it imports) until a config is validated."""

    def call(*args: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args)

    return call


def default_choice(options_of: OptionsLookup, kind: str, description: str) -> Any:
    """The `Field` of a choice whose default is `kind` with its default options."""
    return Field(default_factory=lambda: options_of(kind)(kind=kind), description=description)
