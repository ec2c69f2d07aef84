"""The building blocks of the HTML report (:mod:`.html`): escaping, inline images, tables, fact lists, and the page's
own CSS and script.

Why every piece is built here by hand, from the standard library: the report must open anywhere, years later, with
no network (a CI artifact, a mail attachment), so nothing may come from a CDN or a file beside it; and test ids,
model names and notes come from users, so no text reaches the page without :func:`esc`. A template engine would
bring a dependency for a page this small.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# The browser itself refuses anything from outside the file: no request can leave the page, whatever a text holds.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'"
)

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em auto; max-width: 1400px;
       padding: 0 1em; color: #1b1f23; background: #fff; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .2em; }
nav a { margin-right: 1em; } .muted { color: #57606a; } .bad { color: #a40e26; } .good { color: #116329; }
table { border-collapse: collapse; margin: .5em 0 1em; }
th, td { border: 1px solid #d0d7de; padding: .3em .6em; vertical-align: top; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
thead th { background: #f6f8fa; } th button { font: inherit; font-weight: 600; border: 0; background: none;
       cursor: pointer; padding: 0; } th[aria-sort=ascending] button::after { content: " \\25B2"; }
th[aria-sort=descending] button::after { content: " \\25BC"; } tbody tr:nth-child(even) { background: #fafbfc; }
td.id { font-family: ui-monospace, monospace; font-size: .9em; word-break: break-all; }
dl { display: grid; grid-template-columns: max-content auto; gap: .15em 1em; margin: .5em 0; } dt { font-weight: 600; }
dd { margin: 0; } .bench { display: flex; gap: 1.5em; flex-wrap: wrap; border-top: 1px solid #d0d7de;
       padding-top: .8em; } .bench img { width: 260px; height: auto; } .bench .facts { flex: 1 1 500px; }
img.plot { max-width: 100%; height: auto; border: 1px solid #d0d7de; }
"""

# Sorts the results table when a header is clicked (again: the other way); numbers as numbers, blanks last either
# way. ``#sort=KEY`` (``#sort=-KEY`` descending) in the address clicks that header once the page is loaded, so a
# sorted view can be linked to, and a headless browser can check the clicking with no other tool.
SCRIPT = """
(function () {
  var table = document.getElementById("results");
  if (!table) { return; }
  var heads = table.tHead.rows[0].cells;
  function value(row, index, numeric) {
    var cell = row.cells[index];
    var raw = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent;
    if (!numeric) { return raw.trim().toLowerCase(); }
    var number = parseFloat(raw.replace(/,/g, ""));
    return isNaN(number) ? "" : number;
  }
  function sortBy(index) {
    var head = heads[index], numeric = head.classList.contains("num");
    var ascending = head.getAttribute("aria-sort") !== "ascending";
    var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = value(a, index, numeric), y = value(b, index, numeric);
      if (x === y) { return 0; }
      if (x === "") { return 1; }
      if (y === "") { return -1; }
      return (x < y ? -1 : 1) * (ascending ? 1 : -1);
    });
    rows.forEach(function (row) { body.appendChild(row); });
    for (var j = 0; j < heads.length; j++) { heads[j].removeAttribute("aria-sort"); }
    head.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    document.getElementById("sort-status").textContent =
      "sorted by " + head.textContent + ", " + (ascending ? "ascending" : "descending");
  }
  Array.prototype.forEach.call(heads, function (head, index) {
    head.addEventListener("click", function () { sortBy(index); });
  });
  var asked = /^#sort=(-?)([a-z0-9-]+)$/.exec(window.location.hash);
  var head = asked && table.querySelector('thead th[data-key="' + asked[2] + '"] button');
  if (head) { head.click(); if (asked[1] === "-") { head.click(); } }
})();
"""


def esc(text: object) -> str:
    """Any value as HTML text, quotes included (it may end up in an attribute): user text can never become markup."""
    return html.escape("" if text is None else str(text), quote=True)


def attrs(**values: object) -> str:
    """`` name="value"`` pairs, escaped; None leaves an attribute out; ``class_`` is written ``class`` and
    ``data_key`` ``data-key``."""
    pairs = ((name.rstrip("_").replace("_", "-"), value) for name, value in values.items() if value is not None)
    return "".join(f' {name}="{esc(value)}"' for name, value in pairs)


def png_uri(data: bytes) -> str:
    """An image inside the page as a ``data:`` URI: the file stays one file."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def key_of(header: str) -> str:
    """A header as the key ``#sort=`` names it by: ``Wh/1k queries`` -> ``wh-1k-queries``."""
    return re.sub(r"[^a-z0-9]+", "-", header.lower()).strip("-")


@dataclass(frozen=True)
class Cell:
    """One table cell: its text (escaped when drawn), or ``markup`` already made safe by the caller; ``sort`` is the
    value the script sorts by when the text alone would mislead (a figure cut to three digits); ``title`` a tooltip."""

    text: str = ""
    markup: str | None = None
    sort: float | str | None = None
    title: str | None = None
    class_: str | None = None


def table(
    headers: Sequence[str],
    body: Iterable[Sequence[Cell]],
    numeric: Sequence[bool] = (),
    table_id: str | None = None,
    sortable: bool = False,
) -> str:
    """A table with a header row; numeric columns right-aligned; a sortable one gets a button per header."""
    numbers = list(numeric) + [False] * (len(headers) - len(numeric))
    heads = []
    for header, is_number in zip(headers, numbers, strict=True):
        label = f'<button type="button">{esc(header)}</button>' if sortable else esc(header)
        heads.append(f"<th{attrs(class_='num' if is_number else None, data_key=key_of(header))}>{label}</th>")
    lines = [f"<table{attrs(id=table_id)}>", "<thead><tr>" + "".join(heads) + "</tr></thead>", "<tbody>"]
    for row in body:
        cells = []
        for cell, is_number in zip(row, numbers, strict=True):
            classes = " ".join(c for c in ("num" if is_number else None, cell.class_) if c) or None
            content = cell.markup if cell.markup is not None else esc(cell.text)
            cells.append(f"<td{attrs(class_=classes, data_sort=cell.sort, title=cell.title)}>{content}</td>")
        lines.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join([*lines, "</tbody>", "</table>"])


def facts(pairs: Iterable[tuple[str, object]]) -> str:
    """A definition list of the pairs whose value is not empty; values are text (escaped)."""
    items = [f"<dt>{esc(name)}</dt><dd>{esc(value)}</dd>" for name, value in pairs if value not in (None, "", [], {})]
    return "<dl>" + "".join(items) + "</dl>" if items else ""


def bullets(lines: Iterable[str], empty: str, class_: str | None = None) -> str:
    """Each line as a list item (escaped), or ``empty`` as a muted line so that "none" is said, not left blank."""
    items = [f"<li>{esc(line)}</li>" for line in lines]
    if not items:
        return f'<p class="muted">{esc(empty)}</p>'
    return f"<ul{attrs(class_=class_)}>" + "".join(items) + "</ul>"


def page(title: str, body: str) -> str:
    """The whole document: the policy that keeps it offline, the CSS and the script, all inline."""
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{esc(title)}</title>",
            f"<style>{CSS}</style>",
            "</head>",
            "<body>",
            body,
            f"<script>{SCRIPT}</script>",
            "</body>",
            "</html>",
            "",
        ]
    )
