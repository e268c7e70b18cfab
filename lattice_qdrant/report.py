"""Rendering shared by the reports (``compare``, ``probe``, ``doctor``): aligned text tables, HTML tables, one
stylesheet, and how numbers and sizes are written. Pure: no I/O.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence

__all__ = [
    "CSS",
    "clip",
    "format_bytes",
    "html_page",
    "html_table",
    "num",
    "text_notes",
    "text_table",
    "timestamp",
]

CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:60em}"
    "table{border-collapse:collapse;margin:0.5em 0 1.5em}"
    "th,td{padding:0.2em 0.8em;border-bottom:1px solid #ddd;text-align:right}"
    "th{background:#f4f4f4}tbody th{text-align:left}td:last-child{text-align:left}"
    "code{font-size:0.95em}svg{display:block;margin:1em 0}"
)
"""The stylesheet of the self-contained HTML reports (inline: nothing is fetched)."""


def num(value: float | None) -> str:
    """A metric with three decimals; ``-`` when undefined."""
    return "-" if value is None else f"{value:.3f}"


def clip(text: str, width: int = 90) -> str:
    """``text`` cut to ``width`` characters, ending in ``...`` when cut."""
    return text if len(text) <= width else text[: width - 3] + "..."


def format_bytes(n: float) -> str:
    """``5347737`` -> ``"5.1 MiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Lines of a right-aligned table with a header row, indented by two spaces."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    return [
        "  " + "  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True))
        for line in [list(headers), *rows]
    ]


def html_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An HTML table, every cell escaped."""
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def timestamp(at: float) -> str:
    """A unix time as the reports write it: ``2025-06-02 09:14:05 UTC``."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def text_notes(notes: Sequence[str], width: int | None = None) -> list[str]:
    """The lines of a text report's ``notes`` section (none without notes), each note clipped to ``width``
    characters when given."""
    if not notes:
        return []
    return ["notes", *(f"  - {note if width is None else clip(note, width)}" for note in notes)]


def html_page(title: str, body: Sequence[str], notes: Sequence[str] = ()) -> str:
    """A self-contained HTML page (the stylesheet inline, nothing fetched): ``title``, the ``body`` parts
    (HTML, one a line), then a ``Notes`` list of ``notes`` when there are any; ``title`` and ``notes`` are
    escaped, ``body`` is not."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        *body,
    ]
    if notes:
        parts.append("<h2>Notes</h2><ul>")
        parts += [f"<li>{e(note)}</li>" for note in notes]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
