"""The terminal summary: one row per benchmark, energies in Wh with their device and meter, warnings counted."""

from __future__ import annotations

from collections.abc import Sequence

from pytest_aienergyscore.records.record import PATH_SEPARATOR, Record
from pytest_aienergyscore.rules.comparability import not_comparable_reasons
from pytest_aienergyscore.rules.rating import rate

HEADERS = ("benchmark", "device/meter", "phases (Wh)", "total Wh", "Wh/1k queries", "stars", "notes")
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
    if not body:
        return []
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(HEADERS)]
    right = {3, 4}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    lines = [line(HEADERS).rstrip(), line(["-" * w for w in widths]), *(line(r).rstrip() for r in body)]
    if any(row[5].endswith("*") for row in body):
        lines.append(INDICATIVE_NOTE)
    if any(p.parent for record in records for p in record.phases):
        lines.append(NESTED_NOTE)
    return lines
