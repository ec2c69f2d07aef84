"""Text tables: the one renderer every table goes through (terminal and Markdown), and the results table itself.

The results table, the gate's verdicts (:mod:`.gate_table`) and the Markdown job summary (:mod:`.exports`) all lay
out rows of strings under headers, with figures right-aligned so their digits line up. One renderer, given the
columns once, keeps them from drifting apart: a column that is numeric in the terminal is numeric in Markdown too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from pytest_aienergyscore.records.inference_figures import carbon_note, inference_figures
from pytest_aienergyscore.records.quality import quality_of
from pytest_aienergyscore.records.record import PATH_SEPARATOR, Record
from pytest_aienergyscore.rules.comparability import not_comparable_reasons
from pytest_aienergyscore.rules.rating import rate

TABLE_WIDTH = 120  # the terminal table fits a common CI log and a split editor pane; full ids are in the files
ELLIPSIS = "…"
SHORTEN_COMFORT = 32  # an id is first cut no shorter than this; wrapping other cells comes before cutting it further
SHORTEN_FLOOR = 16  # below this an id no longer says which benchmark it is


@dataclass(frozen=True)
class Column:
    """A column of a table: its header, whether it holds figures (right-aligned, so digits line up), and how it may
    give way when the table is too wide: ``shorten`` cuts it in the middle (ids, whose ends say the most), ``wrap_at``
    breaks it onto more lines at that separator (lists of figures or notes, which must not lose a word)."""

    header: str
    numeric: bool = False
    shorten: bool = False
    wrap_at: str = ""
    longest: int = 0  # a ``shorten`` column is cut to this even where the table would fit (0: only to fit)


def shorten_middle(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, cut in the middle: a test id's file and name are at its start and
    its parameters (the model) at its end, so both ends are kept."""
    if len(text) <= width:
        return text
    keep = max(width - len(ELLIPSIS), 0)
    head = (keep + 1) // 2
    return text[:head] + ELLIPSIS + (text[len(text) - keep // 2 :] if keep // 2 else "")


def shorten_apart(texts: Sequence[str], width: int) -> list[str]:
    """Each text cut as :func:`shorten_middle` does, except where two different texts would then read alike (a test
    and its variant over the same model, ``test_sentence…L6-v2]`` twice): those keep their start and the place where
    they differ from each other instead of their common end."""
    short = [shorten_middle(text, width) for text in texts]
    alike: dict[str, set[str]] = {}
    for text, cut in zip(texts, short, strict=True):
        alike.setdefault(cut, set()).add(text)
    return [
        _cut_at_difference(text, alike[cut] - {text}, width) if len(alike[cut]) > 1 else cut
        for text, cut in zip(texts, short, strict=True)
    ]


def _cut_at_difference(text: str, others: set[str], width: int) -> str:
    """``text``'s start, then the part from where it stops sharing a start with the closest of ``others``."""
    differs_at = max(_shared_start(text, other) for other in others)
    head = max((width - len(ELLIPSIS)) // 2, 0)
    if differs_at <= head:
        return shorten_middle(text, width)
    return text[:head] + ELLIPSIS + text[differs_at : differs_at + width - head - len(ELLIPSIS)]


def _shared_start(a: str, b: str) -> int:
    """How many characters ``a`` and ``b`` share from their start."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def wrap_cell(text: str, separator: str, width: int) -> list[str]:
    """``text`` broken after ``separator`` into lines of at most ``width`` where its pieces allow; a line that goes on
    ends with the separator's visible part (``,``), and a piece longer than ``width`` stays whole (a figure is never
    split)."""
    pieces = text.split(separator) if separator else [text]
    mark = separator.rstrip()
    lines = [pieces[0]]
    for number, piece in enumerate(pieces[1:], start=2):
        joined = lines[-1] + separator + piece
        if len(joined) + (0 if number == len(pieces) else len(mark)) <= width:
            lines[-1] = joined
        else:
            lines[-1] += mark
            lines.append(piece)
    return lines


def _longest_piece(column: Column, body: Sequence[Sequence[str]], index: int) -> int:
    """The narrowest a wrapped column can get: its header, or its longest unbreakable piece (with the separator's
    visible part that ends a wrapped line)."""
    tail = len(column.wrap_at.rstrip())
    pieces = (piece for row in body for piece in row[index].split(column.wrap_at))
    return max(len(column.header), *(len(piece) + tail for piece in pieces))


def _give_way(widths: list[int], index: int, floor: int, excess: int) -> int:
    """Narrow column ``index`` towards ``floor`` by at most ``excess``; returns what is still too wide."""
    cut = max(min(excess, widths[index] - floor), 0)
    widths[index] -= cut
    return excess - cut


def _fit_widths(columns: Sequence[Column], body: Sequence[Sequence[str]], widths: list[int], limit: int) -> list[int]:
    """Column widths that fit ``limit`` where the columns allow: ids are cut to a comfortable length first, then
    lists are wrapped, then ids are cut to the floor. Beyond that the table stays wider rather than lose figures."""
    widths = list(widths)
    excess = sum(widths) + 2 * (len(widths) - 1) - limit
    stages = [
        *((i, max(len(c.header), SHORTEN_COMFORT)) for i, c in enumerate(columns) if c.shorten),
        *((i, _longest_piece(c, body, i)) for i, c in enumerate(columns) if c.wrap_at),
        *((i, max(len(c.header), SHORTEN_FLOOR)) for i, c in enumerate(columns) if c.shorten),
    ]
    for index, floor in stages:
        if excess <= 0:
            break
        excess = _give_way(widths, index, floor, excess)
    return widths


def _cell_lines(column: Column, cell: str, width: int) -> list[str]:
    if column.shorten:  # already cut to ``width`` by text_table (shorten_apart)
        return [cell]
    return wrap_cell(cell, column.wrap_at, width) if column.wrap_at and len(cell) > width else [cell]


def _row_lines(columns: Sequence[Column], row: Sequence[str], widths: Sequence[int]) -> list[list[str]]:
    """A row as one or more lines of cells: a wrapped cell's later lines sit under it, the other cells blank."""
    cells = [_cell_lines(column, cell, width) for column, cell, width in zip(columns, row, widths, strict=True)]
    height = max(len(lines) for lines in cells)
    return [[lines[i] if i < len(lines) else "" for lines in cells] for i in range(height)]


def text_table(columns: Sequence[Column], body: Sequence[Sequence[str]], max_width: int | None = None) -> list[str]:
    """Header, a rule of dashes and the rows, two spaces between columns, each as wide as its widest cell, no
    trailing spaces but on the rule. Given a ``max_width``, the columns that may give way do (see :class:`Column`) until
    the table fits. Empty without rows: a table of headers only would say nothing."""
    if not body:
        return []
    _check_row_lengths(columns, body)
    widths = [max(len(column.header), *(len(row[i]) for row in body)) for i, column in enumerate(columns)]
    widths = [
        min(w, max(c.longest, len(c.header))) if c.shorten and c.longest else w
        for c, w in zip(columns, widths, strict=True)
    ]
    if max_width is not None:
        widths = _fit_widths(columns, body, widths, max_width)
    for index, column in enumerate(columns):
        if column.shorten:
            cut = shorten_apart([row[index] for row in body], widths[index])
            body = [(*row[:index], cell, *row[index + 1 :]) for row, cell in zip(body, cut, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(width) if column.numeric else cell.ljust(width)
            for column, cell, width in zip(columns, cells, widths, strict=True)
        )

    headers = [column.header for column in columns]
    lines = [line(headers).rstrip(), line(["-" * width for width in widths])]
    return lines + [line(cells).rstrip() for row in body for cells in _row_lines(columns, row, widths)]


def _check_row_lengths(columns: Sequence[Column], body: Sequence[Sequence[str]]) -> None:
    """A row with more or fewer cells than headers is a bug in the caller: in Markdown it would silently drop a
    column (GitHub keeps only as many cells as the header has), so it is refused here for both renderers."""
    for row in body:
        if len(row) != len(columns):
            headers = ", ".join(column.header for column in columns)
            raise ValueError(f"a table row has {len(row)} cells for {len(columns)} columns ({headers}): {row!r}")


def _markdown_cell(cell: str) -> str:
    """A cell that cannot break its row: ``|`` escaped, a newline made a space."""
    return cell.replace("|", "\\|").replace("\n", " ")


def markdown_table(columns: Sequence[Column], body: Sequence[Sequence[str]]) -> list[str]:
    """The same table in GitHub-flavoured Markdown: numeric columns right-aligned through the rule row."""
    _check_row_lengths(columns, body)
    rule = ["---:" if column.numeric else "---" for column in columns]
    lines = ["| " + " | ".join(column.header for column in columns) + " |", "| " + " | ".join(rule) + " |"]
    return lines + ["| " + " | ".join(_markdown_cell(cell) for cell in row) + " |" for row in body]


# -- the results table ----------------------------------------------------------------------------------------------

RESULT_COLUMNS = (
    Column("benchmark", shorten=True),
    Column("device/meter"),
    Column("phases (Wh)", wrap_at=" "),
    Column("total Wh", numeric=True),
    Column("Wh/1k queries", numeric=True),
    Column("stars"),
    Column("notes", wrap_at=", "),
)
# Shown only when some benchmark has the figure (generative text: J per output token; image generation: images per Wh),
# after the per-1,000 figure; it divides the same energy as the headline (the device/meter column says which).
OUTPUT_COLUMN = Column("per output", numeric=True)
# Shown only when some benchmark was scored: the task's metric (or the test's own) on the samples that were metered.
QUALITY_COLUMN = Column("quality", wrap_at=" ")
STARS = RESULT_COLUMNS.index(Column("stars"))
INDICATIVE_NOTE = "stars: * = indicative, the result is not comparable with the leaderboard (see notes)"
QUALITY_NOTE = "quality: - = no figure (GPU_ENERGY_SUMMARY.json and the HTML report give the scorer's reason, if any)"
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


def output_cell(record: Record) -> str:
    """Energy per unit of output, with its unit: joules per output token, or images per Wh; "-" for other work."""
    figures = inference_figures(record)
    if figures["joules_per_output_token"] is not None:
        return f"{format_wh(figures['joules_per_output_token'])} J/tok"
    if figures["images_per_wh"] is not None:
        return f"{format_wh(figures['images_per_wh'])} img/Wh"
    return "-"


QUALITY_ABBREVIATIONS = {  # keyed by the metric's name in lower case without separators
    "accuracy": "acc",
    "exactmatch": "EM",
    "macrof1": "F1",
    "f1": "F1",
    "wer": "WER",
    "rougel": "ROUGE-L",
    "map": "mAP",
}
QUALITY_NAME_WIDTH = 14  # a test's own metric name is cut to this, so one long name cannot widen the whole table


def quality_cell(record: Record) -> str:
    """The benchmark's quality as ``acc 0.92`` or ``spearman 0.81`` (the metric first: each task has its own, and a
    bare number would read as comparable across tasks); "-" when it has none."""
    scored = quality_of(record.metadata)
    if scored is None:
        return "-"
    name = str(scored["metric"])
    short = QUALITY_ABBREVIATIONS.get("".join(c for c in name.lower() if c.isalnum()), name)
    return f"{shorten_middle(short, QUALITY_NAME_WIDTH)} {format_quality(float(scored['value']))}"


def format_quality(value: float) -> str:
    """Two decimals for the usual scores and rates (0.92), three significant digits for a test's own larger figure."""
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.3g}"


@dataclass(frozen=True)
class ResultTable:
    """The results table of some records: its columns (the optional ones only where some record has the figure, so
    that a table of plain classification runs stays as narrow as before) and a row of cells per record."""

    columns: tuple[Column, ...]
    rows: list[tuple[str, ...]]


def result_table(records: Sequence[Record]) -> ResultTable:
    """Columns and rows together: the terminal, the HTML page and the job summary all lay out these same cells."""
    outputs = [output_cell(record) for record in records]
    qualities = [quality_cell(record) for record in records]
    with_output, with_quality = any(c != "-" for c in outputs), any(c != "-" for c in qualities)
    body: list[tuple[str, ...]] = []
    for record, output, quality in zip(records, outputs, qualities, strict=True):
        cells = [
            record.nodeid.rsplit("::", 1)[-1],
            f"{record.headline_scope()}/{record.meter_name()}",
            phase_cell(record),
            format_wh(record.total_wh()),
            format_wh(record.wh_per_1000_queries()),
            *([output] if with_output else []),
            *([quality] if with_quality else []),
            rate(record).text(),
            _notes(record),
        ]
        body.append(tuple(cells))
    return ResultTable(_columns(with_output, with_quality), body)


def _columns(with_output: bool, with_quality: bool) -> tuple[Column, ...]:
    optional = [OUTPUT_COLUMN] * with_output + [QUALITY_COLUMN] * with_quality
    return (*RESULT_COLUMNS[:STARS], *optional, *RESULT_COLUMNS[STARS:])


def result_columns(records: Sequence[Record]) -> tuple[Column, ...]:
    """The results table's columns for these records (see :class:`ResultTable`)."""
    return result_table(records).columns


def rows(records: Sequence[Record]) -> list[tuple[str, ...]]:
    """One row per record, cell for cell under :func:`result_columns` of the same records."""
    return result_table(records).rows


def render(records: Sequence[Record], max_name: int = 48, width: int = TABLE_WIDTH) -> list[str]:
    """The table as lines, at most ``width`` wide where it can be; empty when nothing was metered. A test id longer
    than ``max_name`` is cut in the middle even when it would fit: the whole id is in the files."""
    table = result_table(records)
    body = table.rows
    columns = (replace(table.columns[0], longest=max_name), *table.columns[1:])
    lines = text_table(columns, body, max_width=width)
    if not lines:
        return []
    stars = columns.index(Column("stars"))
    if any(row[stars].endswith("*") for row in body):
        lines.append(INDICATIVE_NOTE)
    if any(p.parent for record in records for p in record.phases):
        lines.append(NESTED_NOTE)
    if QUALITY_COLUMN in columns and any(row[columns.index(QUALITY_COLUMN)] == "-" for row in body):
        lines.append(QUALITY_NOTE)
    carbon = carbon_note(list(records))
    if carbon:
        lines.append(carbon)
    return lines
