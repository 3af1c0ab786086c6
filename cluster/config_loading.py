"""Load a run config: YAML file + dotted command-line overrides -> validated `RunConfig`.

Errors name the file and the dotted key, and for an unknown key suggest the nearest valid one, so a
typo like `learner.lerning_rate` fails at once instead of silently training with the default.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from actors.contracts import InputError
from actors.options import choice_info
from cluster.config import RunConfig
from cluster.config.renamed import check_renamed


def parse_override(text: str) -> tuple[list[str], Any]:
    """'learner.beta=0.2' -> (['learner', 'beta'], 0.2); the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise InputError(f"override {text!r} is not of the form section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise InputError(f"override {text!r}: the value is not valid YAML ({exc})") from None
    return key.strip().split("."), value


def apply_override(data: dict, path: list[str], value: Any, origin: str) -> None:
    node, section = data, RunConfig
    for depth, part in enumerate(path[:-1]):
        field, below = _step(section, part, node.get(part))
        child = node.setdefault(part, {})
        if isinstance(child, str) and (field is None or choice_info(field) is not None):
            # A choice written as its bare name (`policy: pvar`) given an option: its mapping form. (A key the
            # config does not have is left to validation, which names it with the nearest key or its new name.)
            child = node[part] = {"kind": child}
        if not isinstance(child, dict):
            raise InputError(f"{origin}: {'.'.join(path[: depth + 1])} is not a section, cannot set {'.'.join(path)}")
        node, section = child, below
    node[path[-1]] = value


def _step(section: type[BaseModel] | None, key: str, data: Any) -> tuple[FieldInfo | None, type[BaseModel] | None]:
    """One key down from `section` (None: not known): the key's field (None: the section has no such key) and
    the section beneath it (None: none known). `data`, the key's raw value, says the kind of a choice: a choice's
    section is the Options of that kind."""
    field = None if section is None else section.model_fields.get(key)
    if field is None:
        return None, None
    info = choice_info(field)
    if info is not None:
        kind = data if isinstance(data, str) else (data if isinstance(data, dict) else {}).get("kind", info.default)
        try:
            return field, info.options_of(kind)
        except ValueError:
            return field, None
    annotation = field.annotation
    # Unwrap list[X] and X | None down to the section model.
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return field, candidate
    return field, None


def _field_names_at(model: type[BaseModel], loc: tuple, data: Any) -> list[str]:
    """The valid keys of the section that an error location points into (`data`: the config's raw mapping,
    which says the kind of a choice)."""
    current: type[BaseModel] | None = model
    for part in loc[:-1]:
        data = data.get(part) if isinstance(data, dict) else None
        if isinstance(part, int):  # a list item: the list's section
            continue
        _, current = _step(current, part, data)
        if current is None:
            return []
    return list(current.model_fields)


def describe_validation_error(exc: ValidationError, source: str, data: Any = None) -> str:
    lines = [f"invalid config ({source}):"]
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")
        if err["type"] == "extra_forbidden":
            valid = _field_names_at(RunConfig, loc, data)
            close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.5)
            hint = f"did you mean '{close[0]}'?" if close else f"valid keys here: {', '.join(valid)}"
            lines.append(f"  - unknown key '{key}': {hint}")
        else:
            given = err.get("input")
            shown = "" if isinstance(given, dict) else f" (got {given!r})"
            lines.append(f"  - {key or '(top level)'}: {err['msg'].removeprefix('Value error, ')}{shown}")
    return "\n".join(lines)


def load_config(path: str | Path | None, overrides: list[str] = (), run_dir: str | None = None) -> RunConfig:
    """Read YAML (or start from defaults when `path` is None), apply overrides, validate."""
    data: dict = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise InputError(f"config file {path} does not exist")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise InputError(f"config file {path} is not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise InputError(f"config file {path} must be a mapping of sections, got {type(loaded).__name__}")
        data = loaded or {}
    for text in overrides:
        keys, value = parse_override(text)
        apply_override(data, keys, value, origin=f"override {text!r}")
    if run_dir is not None:
        apply_override(data, ["run", "run_dir"], run_dir, origin="--run-dir")
    if overrides:
        source += " + command-line overrides"
    check_renamed(data, source)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise InputError(describe_validation_error(exc, source, data)) from None


def dump_config(config: RunConfig) -> str:
    """The resolved config as YAML, every field present: what the run really used."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
