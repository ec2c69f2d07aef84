"""Text tables: the one renderer every table goes through (terminal and Markdown), and the results table itself.

The results table, the gate's verdicts (:mod:`.gate_table`) and the Markdown job summary (:mod:`.exports`) all lay
out rows of strings under headers, with figures right-aligned so their digits line up. One renderer, given the
columns once, keeps them from drifting apart: a column that is numeric in the terminal is numeric in Markdown too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pytest_aienergyscore.records.record import PATH_SEPARATOR, Record
from pytest_aienergyscore.rules.comparability import not_comparable_reasons
from pytest_aienergyscore.rules.rating import rate


@dataclass(frozen=True)
class Column:
    """A column of a table: its header, and whether it holds figures (right-aligned, so digits line up)."""

    header: str
    numeric: bool = False


def text_table(columns: Sequence[Column], body: Sequence[Sequence[str]]) -> list[str]:
    """Header, a rule of dashes and the rows, two spaces between columns, each as wide as its widest cell, no
    trailing spaces but on the rule. Empty without rows: a table of headers only would say nothing."""
    if not body:
        return []
    widths = [max(len(column.header), *(len(row[i]) for row in body)) for i, column in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(width) if column.numeric else cell.ljust(width)
            for column, cell, width in zip(columns, cells, widths, strict=True)
        )

    headers = [column.header for column in columns]
    return [line(headers).rstrip(), line(["-" * width for width in widths]), *(line(row).rstrip() for row in body)]


def _markdown_cell(cell: str) -> str:
    """A cell that cannot break its row: ``|`` escaped, a newline made a space."""
    return cell.replace("|", "\\|").replace("\n", " ")


def markdown_table(columns: Sequence[Column], body: Sequence[Sequence[str]]) -> list[str]:
    """The same table in GitHub-flavoured Markdown: numeric columns right-aligned through the rule row."""
    rule = ["---:" if column.numeric else "---" for column in columns]
    lines = ["| " + " | ".join(column.header for column in columns) + " |", "| " + " | ".join(rule) + " |"]
    return lines + ["| " + " | ".join(_markdown_cell(cell) for cell in row) + " |" for row in body]


# -- the results table ----------------------------------------------------------------------------------------------

RESULT_COLUMNS = (
    Column("benchmark"),
    Column("device/meter"),
    Column("phases (Wh)"),
    Column("total Wh", numeric=True),
    Column("Wh/1k queries", numeric=True),
    Column("stars"),
    Column("notes"),
)
INDICATIVE_NOTE = "stars: * = indicative, the result is not comparable with the leaderboard (see notes)"
NESTED_NOTE = "phases: (outer>inner=x) = inner ran inside outer and is part of its figure; the total adds up the others"


def format_wh(value: float | None) -> str:
    """Readable at every size: tiny CPU estimates and big GPU runs alike (never a bare 0.00 for a real figure)."""
    if value is None:
        return "-"
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.1f}"
    if abs(value) >= 0.01:
        return f"{value:.3f}"
    return f"{value:.2e}"


def _notes(record: Record) -> str:
    notes = []
    if record.energy_kind() == "estimate":
        notes.append("estimate")
    if record.outcome != "passed":
        notes.append(record.outcome)
    warnings = record.warnings()
    if warnings:
        notes.append(f"{len(warnings)} warning{'s' * (len(warnings) > 1)}")
    if not_comparable_reasons(record):
        notes.append("not comparable")
    return ", ".join(notes) or "ok"


def phase_cell(record: Record) -> str:
    """Outermost phases as ``name=Wh`` (they add up to the total); each inner phase right after its parent, in
    parentheses as ``(parent>inner=Wh)``, so a reader sees it is a part and does not add it again."""
    cells = []
    for path in record.phase_paths():
        figure = f"{path.replace(PATH_SEPARATOR, '>')}={format_wh(record.phase_wh(path))}"
        cells.append(figure if record.phase_parent(path) is None else f"({figure})")
    return " ".join(cells)


def rows(records: Sequence[Record]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for record in records:
        phases = phase_cell(record)
        out.append(
            (
                record.nodeid.rsplit("::", 1)[-1],
                f"{record.headline_scope()}/{record.meter_name()}",
                phases,
                format_wh(record.total_wh()),
                format_wh(record.wh_per_1000_queries()),
                rate(record).text(),
                _notes(record),
            )
        )
    return out


def render(records: Sequence[Record], max_name: int = 48) -> list[str]:
    """The table as lines; empty when nothing was metered."""
    body = [(r[0] if len(r[0]) <= max_name else r[0][: max_name - 1] + "…", *r[1:]) for r in rows(records)]
    lines = text_table(RESULT_COLUMNS, body)
    if not lines:
        return []
    if any(row[5].endswith("*") for row in body):
        lines.append(INDICATIVE_NOTE)
    if any(p.parent for record in records for p in record.phases):
        lines.append(NESTED_NOTE)
    return lines
