"""The leaderboard of a merged sweep: per task and model class, every benchmark from every host, lowest energy first.

AI Energy Score compares models within a task (and, for text generation and reasoning, within a size class), by
GPU Wh per 1,000 queries: the merged results read the same way, so a team sees at once where each checkpoint lands
beside its siblings. Each row names the host and GPU it ran on, because a sweep spread over a fleet may mix GPU
models, and what its figure covers and which meter produced it, because a CPU estimate must never pass for a GPU
reading. Rows are laid out by the one table renderer (:mod:`.table`), as text for the terminal and as Markdown
for ``leaderboard.md``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from pytest_aienergyscore.records.quality import quality_of
from pytest_aienergyscore.records.record import Record
from pytest_aienergyscore.report.table import (
    INDICATIVE_NOTE,
    TABLE_WIDTH,
    Column,
    format_wh,
    markdown_table,
    quality_cell,
    text_table,
)
from pytest_aienergyscore.rules.model_class import MODEL_CLASSES
from pytest_aienergyscore.rules.rating import rate

LEADERBOARD_FILE = "leaderboard.md"
NO_CLASS = "unknown"

COLUMNS = (
    Column("#", numeric=True),
    Column("model", shorten=True),
    Column("Wh/1k queries", numeric=True),
    Column("stars"),
    Column("device/meter"),
    Column("GPU"),
    Column("host"),
    Column("backend"),
    Column("test", shorten=True),
)
QUALITY_COLUMN = Column("quality")  # only in tables where some row has a quality figure (issue 17)


class HostedRecord(Protocol):
    """A record and the host that ran it (report.merge.MergedRun), without importing the merge itself."""

    @property
    def record(self) -> Record: ...

    @property
    def host(self) -> str: ...


def group_key(record: Record) -> tuple[str, str]:
    """(task, model class): the leaderboard compares within these; a class nobody could count is its own group."""
    klass = (record.model_class or "").upper()
    return record.task or "unknown task", klass if klass in MODEL_CLASSES else NO_CLASS


def _order(run: HostedRecord) -> tuple[bool, float, str, str]:
    """Lowest Wh per 1,000 queries first; benchmarks without the figure (partial work) last; ties by test id and
    host, so the order never depends on the order the folders were given in."""
    value = run.record.wh_per_1000_queries()
    return value is None, value if value is not None else 0.0, run.record.nodeid, run.host


def groups(runs: Sequence[HostedRecord]) -> list[tuple[tuple[str, str], list[HostedRecord]]]:
    """The runs by task and class (groups in name order, class A before B before C before unknown), each sorted."""
    found: dict[tuple[str, str], list[HostedRecord]] = {}
    for run in runs:
        found.setdefault(group_key(run.record), []).append(run)
    rank = {klass: n for n, klass in enumerate((*MODEL_CLASSES, NO_CLASS))}
    keys = sorted(found, key=lambda key: (key[0], rank[key[1]]))
    return [(key, sorted(found[key], key=_order)) for key in keys]


def gpu_cell(environment: Mapping[str, Any]) -> str:
    """The GPUs a benchmark was metered on, by name (``2x NVIDIA H100 80GB HBM3``); ``-`` when no GPU did the work."""
    names = Counter(str(g.get("name") or "unknown GPU") for g in environment.get("gpus") or () if isinstance(g, dict))
    return ", ".join(name if n == 1 else f"{n}x {name}" for name, n in sorted(names.items())) or "-"


def table_rows(runs: Sequence[HostedRecord], with_quality: bool) -> list[list[str]]:
    """One row per run, in the order given, cell for cell under :func:`columns`."""
    body = []
    for number, run in enumerate(runs, start=1):
        record = run.record
        cells = [
            str(number),
            record.model or "-",
            format_wh(record.wh_per_1000_queries()),
            rate(record).text(),
            f"{record.headline_scope()}/{record.meter_name()}",
            gpu_cell(record.environment),
            run.host,
            record.backend,
            record.nodeid,
        ]
        if with_quality:
            cells.insert(4, quality_cell(record))
        body.append(cells)
    return body


def columns(with_quality: bool) -> tuple[Column, ...]:
    return (*COLUMNS[:4], QUALITY_COLUMN, *COLUMNS[4:]) if with_quality else COLUMNS


def _title(key: tuple[str, str], count: int) -> str:
    task, klass = key
    return f"{task}, class {klass} ({count} benchmark{'s' * (count != 1)})"


def _has_quality(runs: Sequence[HostedRecord]) -> bool:
    return any(quality_of(run.record.metadata) for run in runs)


def _indicative(runs: Sequence[HostedRecord]) -> bool:
    return any(rate(run.record).text().endswith("*") for run in runs)


def leaderboard_lines(runs: Sequence[HostedRecord], width: int = TABLE_WIDTH) -> list[str]:
    """The leaderboard for the terminal: a heading and a table per task and class."""
    lines: list[str] = []
    for key, members in groups(runs):
        with_quality = _has_quality(members)
        lines += ["", _title(key, len(members))]
        lines += text_table(columns(with_quality), table_rows(members, with_quality), max_width=width)
    if _indicative(runs):
        lines.append(INDICATIVE_NOTE)
    return lines


def leaderboard_markdown(runs: Sequence[HostedRecord], heading: str, warnings: Sequence[str]) -> str:
    """leaderboard.md: the heading, a line per unfinished shard, then a section and table per task and class."""
    hosts = len({run.host for run in runs})
    lines = [
        f"# {heading}",
        "",
        f"{len(runs)} benchmark(s) from {hosts} host(s), per task and model class, lowest Wh per 1,000 queries "
        "first. device/meter: what each figure covers (gpu, cpu) and the meter that produced it (an estimate is "
        "never a GPU reading).",
    ]
    if warnings:
        lines += ["", "**Incomplete sweep:**", "", *(f"- {line}" for line in warnings)]
    for key, members in groups(runs):
        with_quality = _has_quality(members)
        lines += ["", f"## {_title(key, len(members))}", ""]
        lines += markdown_table(columns(with_quality), table_rows(members, with_quality))
    if _indicative(runs):
        lines += ["", INDICATIVE_NOTE]
    return "\n".join(lines) + "\n"
