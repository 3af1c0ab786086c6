"""The report's HTML pieces: escaped text, numbers tagged with the metric they state, tables."""

from __future__ import annotations

import html
from typing import Any

from cluster.tools.report.data import Value
from cluster.tools.status import percent


def esc(text: Any) -> str:
    return html.escape(str(text))


def stated_number(value: Value, key: str, round_index: int | None = None, *, digits: int = 4, signed: bool = False,
                  as_percent: bool = False) -> str:
    """A number in the page, tagged so readers (and tests) can find which metric it states; `as_percent`: a
    share shown as a percentage, a change of shares in points (status.percent formats both)."""
    where = "" if round_index is None else f' data-round="{round_index}"'
    css = "num" if not value.missing and value.number is not None else "num missing"
    mark = "*" if value.source == "derived" else ""
    text = percent(value.number, signed) if as_percent and value.number is not None else value.text(digits, signed)
    return (f'<span class="{css}" data-key="{esc(key)}"{where}>{esc(text)}</span>'
            + (f'<sup title="derived from recorded start/end means">{mark}</sup>' if mark else ""))


def stated_percent(value: Value, key: str, round_index: int | None = None, *, signed: bool = False) -> str:
    """stated_number for a share in [0, 1] (an accuracy), shown as a percentage with one decimal."""
    return stated_number(value, key, round_index, signed=signed, as_percent=True)


def html_table(head: list[str], rows: list[list[str]], table_id: str) -> str:
    out = [f'<table id="{table_id}"><thead><tr>' + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    out += ["<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows]
    out.append("</tbody></table>")
    return "\n".join(out)
