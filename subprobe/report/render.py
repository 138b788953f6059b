"""One :class:`Table` value, rendered to Markdown, HTML and CSV (the report's only writers of tables).

The analysis modules (:mod:`.tables`, :mod:`.pareto`, :mod:`.localisation`) build tables from
their data; the page (:mod:`.html`) and the files beside it only render them:

* Markdown: ``### title``, a pipe table (one ``---`` per column), then the notes as paragraphs and the
  bullets as a ``-`` list, each group after a blank line;
* HTML: ``<h4>title</h4>``, ``<table id="ID">`` (numeric cells right-aligned; an empty or ``None``
  cell shows as "–"), ``<p>`` notes and a ``<ul>`` of bullets, all text escaped unless the table is
  ``raw`` (its cells are HTML already);
* CSV: the header and the rows, ``\\n`` line endings, quoted where needed (``csv.writer``).

A table without rows shows its ``empty`` text instead, when it has one.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

#: Shown for a missing value.
DASH = "–"


@dataclass(frozen=True)
class Table:
    """A table as data: its id (HTML anchor), title, column names, rows of cells and the text around it."""

    id: str
    title: str
    header: Sequence[str]
    rows: Sequence[Sequence[Any]]
    notes: Sequence[str] = ()
    bullets: Sequence[str] = ()
    #: said instead of the table when there are no rows ("" = show the empty table)
    empty: str = ""
    #: the cells are HTML already (links, details): not escaped in HTML
    raw: bool = False

    @property
    def shows_empty(self) -> bool:
        return not self.rows and bool(self.empty)


# ------------------------------------------------------------------------------------------ Markdown


def markdown(tables: Table | Iterable[Table]) -> str:
    """The Markdown of one table or of several, one after the other."""
    if isinstance(tables, Table):
        tables = [tables]
    return "".join(_markdown(t) for t in tables)


def _markdown(t: Table) -> str:
    if t.shows_empty:
        return t.empty + "\n"
    lines = [f"### {t.title}", ""] if t.title else []
    lines += [_md_row(t.header), "|" + "---|" * len(t.header), *(_md_row(r) for r in t.rows), ""]
    groups = [[n] for n in t.notes] + ([[f"- {b}" for b in t.bullets]] if t.bullets else [])
    for i, group in enumerate(groups):
        lines += ([""] if i else []) + group
    return "\n".join(lines) + "\n"


def _md_row(cells: Sequence[Any]) -> str:
    return "| " + " | ".join("" if c is None else str(c) for c in cells) + " |"


# ---------------------------------------------------------------------------------------------- HTML


def to_html(tables: Table | Iterable[Table]) -> str:
    """The HTML of one table or of several (title, table, notes, bullets)."""
    if isinstance(tables, Table):
        tables = [tables]
    return "\n".join(_html(t) for t in tables)


def _html(t: Table) -> str:
    parts = [f"<h4>{html.escape(t.title)}</h4>"] if t.title else []
    if t.shows_empty:
        parts.append(f"<p>{html.escape(t.empty)}</p>")
        return "\n".join(parts)
    parts.append(html_table(t.header, t.rows, t.id, raw=t.raw))
    parts += [f"<p>{html.escape(n)}</p>" for n in t.notes]
    if t.bullets:
        parts.append("<ul>" + "".join(f"<li>{html.escape(b)}</li>" for b in t.bullets) + "</ul>")
    return "\n".join(parts)


def html_table(header: Sequence[str], rows: Sequence[Sequence[Any]], table_id: str | None = None,
               raw: bool = False) -> str:
    """An HTML table; cells are escaped unless ``raw`` (then they are HTML already)."""
    def cell(value, tag: str) -> str:
        text = DASH if value is None or value == "" else value
        content = str(text) if raw and tag == "td" else html.escape(str(text))
        numeric = tag == "td" and _is_number(str(text))
        return f"<{tag}{' class=num' if numeric else ''}>{content}</{tag}>"

    attr = f' id="{html.escape(table_id)}"' if table_id else ""
    head = "<tr>" + "".join(cell(h, "th") for h in header) + "</tr>"
    body = "\n".join("<tr>" + "".join(cell(v, "td") for v in row) + "</tr>" for row in rows)
    return f"<table{attr}>\n<thead>{head}</thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", "").replace("%", "").split(" ")[0])
    except ValueError:
        return False
    return True


# ----------------------------------------------------------------------------------------------- CSV


def to_csv(tables: Table | Iterable[Table]) -> str:
    """CSV of the header and rows (several tables with the same header: one header, all their rows)."""
    if isinstance(tables, Table):
        tables = [tables]
    tables = list(tables)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if tables:
        writer.writerow(tables[0].header)
    for t in tables:
        writer.writerows(t.rows)
    return buf.getvalue()
