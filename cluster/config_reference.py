"""Render the config reference (every section and field with type, default and description) as Markdown.

    python -m cluster.config_reference           # print the page
    python -m cluster.config_reference --write   # rewrite docs/config-reference.md

docs/config-reference.md is this module's output, whole; a test (tests/test_config.py) keeps the
file identical to it, so the reference can never drift from the schema.
"""

from __future__ import annotations

import argparse
import typing
from pathlib import Path

from pydantic import BaseModel

from actors.options import ChoiceInfo, choice_info
from cluster.config import RunConfig

PAGE = Path(__file__).resolve().parents[1] / "docs" / "config-reference.md"
REFRESH = "python -m cluster.config_reference --write"

HEADER = f"""# Config reference

Every section of a run's config and every key in it, with its type, default and meaning. Generated
from the schema in `cluster/config/` by `{REFRESH}`: do not edit by
hand (tests/test_config.py fails when this page differs from the schema). Keys are written
`section.key`; any of them can be set in the YAML file or on the command line as
`section.key=value` ([usage.md](usage.md)).
"""


def _type_name(annotation) -> str:
    text = getattr(annotation, "__name__", None) if not typing.get_args(annotation) else None
    # A bare '|' would end the Markdown table cell.
    return (text or str(annotation).replace("typing.", "")).replace("|", "\\|")


def _section_model(annotation) -> type[BaseModel] | None:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _row(key: str, field, where: str = "") -> str:
    """One key's row; `where` (the kinds of a choice that read it) follows the key in brackets."""
    return (f"| `{key}`{f' ({where})' if where else ''} | `{_type_name(field.annotation)}` | "
            f"`{field.get_default(call_default_factory=True)!r}` | {field.description} |")


def _choice_rows(key: str, info: ChoiceInfo) -> list[str]:
    """Each kind's options once: an option several kinds read with the same type and default is one row."""
    rows: dict[tuple, tuple[typing.Any, list[str]]] = {}  # (name, type, default, description) -> (field, its kinds)
    for kind in info.kinds():
        for name, field in info.options_of(kind).model_fields.items():
            if name != "kind":
                same = (name, _type_name(field.annotation), repr(field.get_default(call_default_factory=True)),
                        field.description)
                rows.setdefault(same, (field, []))[1].append(kind)
    lines = [f"| `{key}.kind` | `str` | `{info.default!r}` | The {info.what}: {', '.join(f'`{k}`' for k in info.kinds())}. |"]
    for (name, *_), (field, kinds) in rows.items():
        where = "every kind" if len(kinds) == len(tuple(info.kinds())) else ", ".join(kinds)
        lines.append(_row(f"{key}.{name}", field, where))
    return lines


def render(model: type[BaseModel] = RunConfig) -> str:
    lines: list[str] = []
    for section, field in model.model_fields.items():
        section_model = _section_model(field.annotation)
        lines += [f"## `{section}`", "", field.description or "", "", "| key | type | default | meaning |",
                  "|---|---|---|---|"]
        for name, sub in section_model.model_fields.items():
            info = choice_info(sub)
            if info is not None and info.kinds is not None:
                lines.append(f"| `{section}.{name}` | `{{kind, ...}}` | `{{kind: {info.default}}}` | {sub.description} |")
                lines += _choice_rows(f"{section}.{name}", info)
                continue
            nested = _section_model(sub.annotation)
            default = "(see below)" if nested else repr(sub.get_default(call_default_factory=True))
            lines.append(f"| `{section}.{name}` | `{_type_name(sub.annotation)}` | `{default}` | {sub.description} |")
            if nested:
                for leaf, leaf_field in nested.model_fields.items():
                    key = f"{section}.{name}[].{leaf}" if typing.get_origin(sub.annotation) is list else f"{section}.{name}.{leaf}"
                    lines.append(_row(key, leaf_field))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def page() -> str:
    """docs/config-reference.md as it must read: the header, then every section."""
    return f"{HEADER}\n{render()}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cluster.config_reference", description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"rewrite {PAGE.relative_to(PAGE.parents[1])}")
    if parser.parse_args(argv).write:
        PAGE.write_text(page())
    else:
        print(page(), end="")


if __name__ == "__main__":
    main()
