"""Render the config reference (every section and field with type, default and description) as Markdown.

    python -m cluster.config_reference                  # print it
    python -m cluster.config_reference --write-readme   # refresh README.md

README.md embeds this output between markers; a test keeps the two identical, so the reference
can never drift from the schema.
"""

from __future__ import annotations

import sys
import typing
from pathlib import Path

from pydantic import BaseModel

from cluster.config import RunConfig

BEGIN = "<!-- config-reference:begin -->"
END = "<!-- config-reference:end -->"


def _type_name(annotation) -> str:
    text = getattr(annotation, "__name__", None) if not typing.get_args(annotation) else None
    # A bare '|' would end the Markdown table cell.
    return (text or str(annotation).replace("typing.", "")).replace("|", "\\|")


def _section_model(annotation) -> type[BaseModel] | None:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def render(model: type[BaseModel] = RunConfig) -> str:
    lines: list[str] = []
    for section, field in model.model_fields.items():
        section_model = _section_model(field.annotation)
        lines += [f"### `{section}`", "", field.description or "", "", "| key | type | default | meaning |",
                  "|---|---|---|---|"]
        for name, sub in section_model.model_fields.items():
            nested = _section_model(sub.annotation)
            default = "(see below)" if nested else repr(sub.get_default(call_default_factory=True))
            lines.append(f"| `{section}.{name}` | `{_type_name(sub.annotation)}` | `{default}` | {sub.description} |")
            if nested:
                for leaf, leaf_field in nested.model_fields.items():
                    key = f"{section}.{name}[].{leaf}" if typing.get_origin(sub.annotation) is list else f"{section}.{name}.{leaf}"
                    lines.append(
                        f"| `{key}` | `{_type_name(leaf_field.annotation)}` | "
                        f"`{leaf_field.get_default(call_default_factory=True)!r}` | {leaf_field.description} |"
                    )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write_readme(path: Path) -> None:
    text = path.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{render()}{END}{tail}")


if __name__ == "__main__":
    if "--write-readme" in sys.argv:
        write_readme(Path(__file__).resolve().parents[1] / "README.md")
    else:
        print(render(), end="")
