"""The report's HTML pieces: escaped text, numbers tagged with the metric they state, tables."""

from __future__ import annotations

import html
from typing import Any

from cluster.tools.report.data import Value


def esc(text: Any) -> str:
    return html.escape(str(text))


def stated_number(value: Value, key: str, round_index: int | None = None, *, digits: int = 4, signed: bool = False) -> str:
    """A number in the page, tagged so readers (and tests) can find which metric it states."""
    where = "" if round_index is None else f' data-round="{round_index}"'
    css = "num" if not value.missing and value.number is not None else "num missing"
    mark = "*" if value.source == "derived" else ""
    return (f'<span class="{css}" data-key="{esc(key)}"{where}>{esc(value.text(digits, signed))}</span>'
            + (f'<sup title="derived from recorded start/end means">{mark}</sup>' if mark else ""))


def html_table(head: list[str], rows: list[list[str]], table_id: str) -> str:
    out = [f'<table id="{table_id}"><thead><tr>' + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    out += ["<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows]
    out.append("</tbody></table>")
    return "\n".join(out)
