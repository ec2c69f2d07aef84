"""The HTML report of a session: one self-contained file with the results table (sortable), each run's label, the
leaderboard plot, the comparison with a baseline, every warning and not-comparable reason, and the meter and
hardware facts.

Why it reads the session folder rather than the live session: ``--energy-html`` at the end of a session and
``aienergyscore html RESULTS`` later (a CI artifact, another machine) then draw the same page from the same files
(records.jsonl or the records in hand, summary.json, the run folders' label.png, energy_plot.png, gate.json). It
draws nothing itself: the figures and cells come from the records through the terminal table's own rows
(:mod:`.table`), so the two never disagree. The building blocks and the page's CSS and script are in
:mod:`.html_parts`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from pytest_aienergyscore.gate.verdicts import GATE_FILE, GateOutcome, GateSettings, Verdict
from pytest_aienergyscore.records.atomic import WriteFailed, write_if_changed
from pytest_aienergyscore.records.record import PATH_SEPARATOR, Record
from pytest_aienergyscore.records.store import RECORDS_FILE, read_store
from pytest_aienergyscore.report.files import SUMMARY_JSON, energy_scope
from pytest_aienergyscore.report.frontier_plot import FRONTIER_FILE
from pytest_aienergyscore.report.gate_table import VERDICT_COLUMNS, verdict_rows
from pytest_aienergyscore.report.html_parts import Cell, bullets, esc, facts, page, png_uri, table
from pytest_aienergyscore.report.label import LABEL_FILE
from pytest_aienergyscore.report.merge_shards import warning_line
from pytest_aienergyscore.report.plot import PLOT_FILE
from pytest_aienergyscore.report.quality_view import per_correct_text, quality_sort_key, quality_text
from pytest_aienergyscore.report.table import (
    INDICATIVE_NOTE,
    NESTED_NOTE,
    QUALITY_COLUMN,
    QUALITY_NOTE,
    format_wh,
    render,
    result_table,
)
from pytest_aienergyscore.rules.comparability import not_comparable_reasons
from pytest_aienergyscore.rules.gpu_survey import idle_watts
from pytest_aienergyscore.rules.rating import rate

HTML_FILE = "report.html"  # the CLI's default name in the session folder, and the copy's name in --energy-exports
TEST_ID_HEADER = "test id"


class HtmlReportError(ValueError):
    """A folder the report cannot be drawn from, as one line naming it and what was expected."""


@dataclass
class SessionView:
    """What the page shows, read from a session folder: the records, each one's run folder (for its label), the
    plot, the gate's verdicts, and the summary's header (session name, meter)."""

    session_dir: Path
    records: list[Record]
    folders: list[Path | None]
    meta: dict[str, Any] = field(default_factory=dict)
    plot: bytes | None = None
    frontier: bytes | None = None  # energy against quality (frontier.png), when some benchmark has quality
    gate: GateOutcome | None = None
    gate_problem: str | None = None


# -- reading a session folder ---------------------------------------------------------------------------------------


def read_session(session_dir: Path, records: Sequence[Record] | None = None) -> tuple[SessionView, list[str]]:
    """The session folder's view, and one line per torn record skipped. ``records``: the session's own, at its
    end (then records.jsonl is not read again)."""
    skipped: list[str] = []
    if records is None:
        store = session_dir / RECORDS_FILE
        if not store.is_file():
            raise HtmlReportError(f"{session_dir}: no {RECORDS_FILE} here; give a session folder (results/<date-time>)")
        loaded, skipped = read_store(store)
        if not loaded:
            raise HtmlReportError(f"{store}: no intact record to report")
        records = loaded
    meta = _json(session_dir / SUMMARY_JSON)
    meta = meta if isinstance(meta, dict) else {}
    view = SessionView(session_dir, list(records), _run_folders(session_dir, records, meta), meta)
    view.plot = _read_bytes(session_dir / PLOT_FILE)
    view.frontier = _read_bytes(session_dir / FRONTIER_FILE)
    view.gate, view.gate_problem = _read_gate(session_dir / GATE_FILE)
    return view, skipped


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _run_folders(session_dir: Path, records: Sequence[Record], meta: dict[str, Any]) -> list[Path | None]:
    """Each record's run folder, from summary.json's rows (in record order, matched by test id so that a missing
    row costs only its label). A folder moved with its session (a downloaded artifact) is found by its name."""
    rows = [row for row in meta.get("benchmarks") or () if isinstance(row, dict)]
    found: list[Path | None] = []
    for record in records:
        row = next((r for r in rows if r.get("test") == record.nodeid), None)
        if row is not None:
            rows.remove(row)
        named = Path(str(row["run_folder"])) if row and row.get("run_folder") else None
        candidates = [named, session_dir / named.name] if named is not None else []
        found.append(next((path for path in candidates if path.is_dir()), None))
    return found


def _read_gate(path: Path) -> tuple[GateOutcome | None, str | None]:
    """gate.json as the gate's own outcome (so its table and headline are the terminal's), or why it is unreadable."""
    if not path.exists():
        return None, None
    data = _json(path)
    try:
        names = {f.name for f in fields(Verdict)}
        verdicts = [Verdict(**{k: v for k, v in item.items() if k in names}) for item in data["verdicts"]]
        settings = GateSettings(
            data.get("fail_above_pct"),
            bool(data.get("strict")),
            bool(data.get("require_baseline")),
            data.get("quality_drop_pct"),  # absent from gate.json files written before quality was gated
        )
        baseline = Path(data["baseline"]) if data.get("baseline") else None
        return GateOutcome(verdicts, settings, baseline, [str(note) for note in data.get("notes") or ()]), None
    except (TypeError, KeyError, AttributeError) as err:
        return None, f"{path} could not be read ({type(err).__name__}: {err})"


# -- the sections ---------------------------------------------------------------------------------------------------


def covers(record: Record) -> str:
    """What the record's headline figure covers, and which meter produced it: ``cpu/estimate: estimated CPU...``."""
    device = record.headline_scope()
    return f"{device}/{record.meter_name()}: {energy_scope(record, device)}"


def results_table(records: Sequence[Record], sortable: bool = True, links: bool = True) -> str:
    """The terminal's results table, cell for cell (its own rows), plus each test's whole id; figures carry their
    unrounded value for sorting, each device/meter cell says what it covers as its tooltip, and a quality cell
    without a figure says why (the scorer's reason), where the terminal has no room for it."""
    result = result_table(records)  # the optional columns only where a record has that figure
    headers = [column.header for column in result.columns]
    raw = {"total Wh": lambda r: r.total_wh(), "Wh/1k queries": lambda r: r.wh_per_1000_queries()}
    body = []
    for number, (record, cells) in enumerate(zip(records, result.rows, strict=True), start=1):
        row = []
        for header, text in zip(headers, cells, strict=True):
            figure = raw[header](record) if header in raw else None
            cell = Cell(text, sort="" if header in raw and figure is None else figure)
            if header == "benchmark" and links:
                cell = Cell(text, markup=f'<a href="#b-{number}">{esc(text)}</a>', sort=text)
            elif header == "device/meter":
                cell = Cell(text, title=covers(record))
            elif header == QUALITY_COLUMN.header:
                cell = _quality_cell(record, text)
            row.append(cell)
        body.append([*row, Cell(record.nodeid, class_="id")])
    numeric = [column.numeric for column in result.columns] + [False]
    return table([*headers, TEST_ID_HEADER], body, numeric, "results" if sortable else None, sortable)


def _quality_cell(record: Record, text: str) -> Cell:
    """The quality cell: sorted by metric, then value (blanks last); without a figure, the scorer's reason in place
    of the terminal's dash, and the whole story (samples, references) as the tooltip of one with a figure."""
    described = quality_text(record)
    if described is not None and described.startswith("none: "):
        return Cell(text, markup=f'<span class="muted">{esc(described)}</span>', sort="")
    return Cell(text, sort=quality_sort_key(record), title=described)


def results_notes(records: Sequence[Record]) -> str:
    """The notes under the table: the terminal's own (indicative stars, nested phases), then what each kind of
    figure covers and which meter produced it."""
    footnotes = [line for line in render(records) if line in (INDICATIVE_NOTE, NESTED_NOTE, QUALITY_NOTE)]
    scopes = list(dict.fromkeys(covers(record) for record in records))
    return bullets([*footnotes, *scopes], "")


def _unfinished_shards(meta: dict[str, Any]) -> str:
    """A merged sweep's shards that did not finish, each with its host and what it lacks, above the results: a
    leaderboard missing some of its benchmarks must say so where it is read, not only in its title."""
    entries = meta.get("unfinished_shards") or []
    lines = [warning_line(e) if isinstance(e, dict) else json.dumps(e) for e in entries]
    if not lines:
        return ""
    return f'<section id="unfinished"><h2>Unfinished shards</h2>{bullets(lines, "", "warnings")}</section>'


def _results(records: Sequence[Record]) -> str:
    return "\n".join(
        [
            '<section id="results-section"><h2>Results</h2>',
            '<p class="muted">Click a header to sort (again: the other way). '
            '<span id="sort-status" aria-live="polite">in the order the benchmarks ran</span></p>',
            results_table(records),
            results_notes(records),
            "</section>",
        ]
    )


def _comparison(view: SessionView) -> str:
    if view.gate_problem:
        return f'<section id="comparison"><h2>Comparison</h2><p class="bad">{esc(view.gate_problem)}</p></section>'
    gate = view.gate
    if gate is None:
        return ""
    headers = [column.header for column in VERDICT_COLUMNS]
    body = [[Cell(text) for text in row] for row in verdict_rows(gate, full_ids=True)]
    baseline = f"against {gate.baseline_path}" if gate.baseline_path else ""
    return "\n".join(
        [
            '<section id="comparison"><h2>Comparison</h2>',
            f'<p class="{"bad" if gate.failed else "good"}"><strong>{esc(gate.headline())}</strong></p>',
            f'<p class="muted">{esc(baseline)} (Wh per 1,000 queries unless marked)</p>' if baseline else "",
            table(headers, body, [column.numeric for column in VERDICT_COLUMNS]),
            bullets(gate.notes, ""),
            "</section>",
        ]
    )


def _label(folder: Path | None, record: Record) -> str:
    data = _read_bytes(folder / LABEL_FILE) if folder is not None else None
    if data is None:
        where = f"in {folder}" if folder is not None else "(no run folder was written)"
        return f'<p class="muted label">no {LABEL_FILE} {esc(where)}</p>'
    return f'<img src="{png_uri(data)}" alt="{esc(f"energy label of {record.nodeid}")}" width="260">'


def _phases(record: Record) -> str:
    headers = ["phase", "Wh", "samples", "tokens", "windows", "in the total"]
    body = []
    for phase in record.phase_breakdown():
        path = f"{phase['parent']}{PATH_SEPARATOR}{phase['name']}" if phase["parent"] else phase["name"]
        cells = [path.replace(PATH_SEPARATOR, ">"), format_wh(phase["wh"]), phase["samples"], phase["tokens"]]
        in_total = "yes" if phase["in_total"] else "no: part of its parent"
        body.append([Cell("-" if c is None else str(c)) for c in [*cells, phase["windows"], in_total]])
    return table(headers, body, [False, True, True, True, True, False]) if body else ""


def benchmark_facts(record: Record, folder: Path | None = None) -> str:
    """Who, what, on what, and how sure: the facts list of one benchmark."""
    rating = rate(record)
    return facts(
        [
            ("test id", record.nodeid),
            ("model", record.model),
            ("task", record.task),
            ("backend", record.backend),
            ("outcome", record.outcome),
            (
                "energy",
                f"{format_wh(record.total_wh())} Wh in all, {format_wh(record.wh_per_1000_queries())} Wh per "
                f"1,000 queries ({record.energy_kind()})",
            ),
            ("covers", covers(record)),
            ("quality", quality_text(record)),
            ("energy per correct answer", per_correct_text(record)),
            ("why this meter", record.meter.get("reason")),
            ("queries", record.query_count()),
            ("repetitions", record.repetitions()),
            ("stars", f"{rating.text()}" + (f" ({rating.note})" if rating.note else "")),
            ("partial work", record.partial_work()),
            ("run folder", folder),
        ]
    )


def _benchmark(number: int, record: Record, folder: Path | None) -> str:
    reasons = not_comparable_reasons(record)
    return "\n".join(
        [
            f'<section class="bench" id="b-{number}">',
            f"<div>{_label(folder, record)}</div>",
            '<div class="facts">',
            f"<h3>{esc(record.nodeid)}</h3>",
            benchmark_facts(record, folder),
            _phases(record),
            "<h4>Warnings</h4>",
            bullets(record.warnings(), "none", "warnings"),
            "<h4>Comparable with the leaderboard?</h4>",
            bullets([f"not comparable: {reason}" for reason in reasons], "yes: comparable", "reasons"),
            *(["<h4>Notes</h4>", bullets(record.notes, "")] if record.notes else []),
            "</div>",
            "</section>",
        ]
    )


def _plot(view: SessionView) -> str:
    if view.plot is None:
        why = f"no {PLOT_FILE} in this session (no task with published results, or matplotlib is not installed)"
        return (
            f'<section id="plot"><h2>Against the leaderboard</h2><p class="muted">{esc(why)}</p>'
            f"{_frontier(view)}</section>"
        )
    alt = "this session's models against the published models of each task"
    return (
        f'<section id="plot"><h2>Against the leaderboard</h2><img class="plot" src="{png_uri(view.plot)}" '
        f'alt="{esc(alt)}">{_frontier(view)}</section>'
    )


def _frontier(view: SessionView) -> str:
    """Energy against quality under the leaderboard plot, when the session scored quality."""
    if view.frontier is None:
        return ""
    alt = "energy against quality for every model of each task, with the published energy range as a band"
    return f'<h3>Energy against quality</h3><img class="plot" src="{png_uri(view.frontier)}" alt="{esc(alt)}">'


def _meters(records: Sequence[Record]) -> str:
    """Each meter used, once: its name and kind, what its figures cover, why it was chosen, and its devices."""
    seen: dict[tuple[str, ...], int] = {}
    for record in records:
        devices = ", ".join(
            f"{d.get('device')} ({d.get('method') or d.get('scope')})" for d in record.meter.get("devices") or ()
        )
        key = (
            record.meter_name(),
            record.energy_kind(),
            covers(record),
            str(record.meter.get("reason") or "-"),
            devices,
        )
        seen[key] = seen.get(key, 0) + 1
    headers = ["meter", "kind", "covers", "why this meter", "devices", "benchmarks"]
    body = [[Cell(text or "-") for text in key] + [Cell(str(count))] for key, count in seen.items()]
    return table(headers, body, [False] * 5 + [True])


def _gpu_line(gpu: dict[str, Any], idle: dict[str, Any]) -> str:
    parts = [str(gpu.get("name") or "unknown GPU")]
    parts += [f"driver {gpu['driver']}"] if gpu.get("driver") else []
    parts += [f"power limit {gpu['power_limit_w']:g} W"] if isinstance(gpu.get("power_limit_w"), int | float) else []
    parts += [f"counter: {gpu['counter']}"] if gpu.get("counter") else []
    parts += [f"idle {idle[str(gpu.get('device'))]} W"] if str(gpu.get("device")) in idle else []
    return f"{gpu.get('device')}: " + ", ".join(parts)


def machine_facts(environment: dict[str, Any]) -> str:
    """The machine and software one or more benchmarks ran on."""
    gpus = [g for g in environment.get("gpus") or () if isinstance(g, dict)]
    idle = idle_watts(environment.get("gpu_state") or [])
    versions = environment.get("versions") or {}
    count = environment.get("cpu_count")
    return facts(
        [
            ("host", environment.get("hostname")),
            ("OS", environment.get("os")),
            ("CPU", f"{environment.get('cpu')}" + (f" ({count} logical cores)" if count else "")),
            ("memory", f"{environment['memory_gib']} GiB" if environment.get("memory_gib") else None),
            ("GPUs", "; ".join(_gpu_line(g, idle) for g in gpus) or "none metered (no GPU did the work)"),
            ("CUDA_VISIBLE_DEVICES", environment.get("cuda_visible_devices")),
            ("Python", environment.get("python")),
            ("versions", ", ".join(f"{name} {version}" for name, version in versions.items() if version)),
        ]
    )


def _hardware(view: SessionView) -> str:
    machines: dict[str, dict[str, Any]] = {}
    for record in view.records:
        environment = {k: v for k, v in record.environment.items() if k != "gpu_state"} | {
            "gpu_state": [
                {"device": g.get("device"), "idle_power_w": g.get("idle_power_w")}
                for g in record.environment.get("gpu_state") or ()
                if isinstance(g, dict)
            ]
        }
        machines.setdefault(json.dumps(environment, sort_keys=True, default=str), environment)
    session_meter = view.meta.get("meter")
    parts = ['<section id="hardware"><h2>Meter and hardware</h2>']
    if session_meter:
        parts.append(f"<p>Session meter: {esc(session_meter)}</p>")
    parts += [_meters(view.records)]
    for number, environment in enumerate(machines.values(), start=1):
        heading = "Machine" if len(machines) == 1 else f"Machine {number}"
        parts += [f"<h3>{heading}</h3>", machine_facts(environment)]
    parts.append("</section>")
    return "\n".join(parts)


def render_page(view: SessionView) -> str:
    """The whole page, as text."""
    name = str(view.meta.get("session") or view.session_dir.name)
    count = len(view.records)
    intro = [f"session {name}", f"{count} benchmark{'s' * (count != 1)}", f"folder {view.session_dir}"]
    if view.meta.get("exit_status") is not None:
        intro.append(f"pytest exit status {view.meta['exit_status']}")
    nav = [("results-section", "Results"), ("comparison", "Comparison"), ("benchmarks", "Benchmarks")]
    nav += [("plot", "Against the leaderboard"), ("hardware", "Meter and hardware")]
    comparison = _comparison(view)
    links = " ".join(
        f'<a href="#{anchor}">{esc(text)}</a>' for anchor, text in nav if anchor != "comparison" or comparison
    )
    benchmarks = [_benchmark(n, r, f) for n, (r, f) in enumerate(zip(view.records, view.folders, strict=True), 1)]
    body = [
        "<header><h1>AI Energy Score report</h1>",
        f'<p class="muted">{esc(" · ".join(intro))}</p>',
        f"<nav>{links}</nav></header>",
        _unfinished_shards(view.meta),
        _results(view.records),
        comparison,
        '<section id="benchmarks"><h2>Benchmarks</h2>',
        *benchmarks,
        "</section>",
        _plot(view),
        _hardware(view),
    ]
    return page(f"AI Energy Score report: {name}", "\n".join(part for part in body if part))


# -- writing --------------------------------------------------------------------------------------------------------


def write_html(view: SessionView, targets: Sequence[Path]) -> list[Path]:
    """The page, drawn once, written whole (or not at all) to every target; a target's folder is made as needed."""
    data = render_page(view).encode("utf-8")
    for path in targets:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:  # one line naming the page, as for every other file
            raise WriteFailed(path, err) from None
        write_if_changed(path, data)
    return list(targets)


def write_session_html(
    session_dir: Path, records: Sequence[Record], html_path: Path | None, exports_dir: Path | None
) -> list[Path]:
    """At the end of a session: ``--energy-html FILE`` and, with ``--energy-exports DIR``, DIR/report.html; nothing
    when neither was asked for. Raises OSError (one line) for a file that cannot be written."""
    targets = [path for path in (html_path, exports_dir / HTML_FILE if exports_dir else None) if path is not None]
    if not targets:
        return []
    view, _ = read_session(session_dir, records)
    return write_html(view, targets)


# -- pytest-html: our table and each benchmark's label in its report ------------------------------------------------


# pytest-html's page draws tables without borders; ours keeps its lines and its figures aligned there too.
PYTEST_HTML_STYLE = (
    "<style>.aienergyscore table { border-collapse: collapse; margin: .5em 0; } .aienergyscore th, .aienergyscore td "
    "{ border: 1px solid #d0d7de; padding: .2em .5em; text-align: left; vertical-align: top; } .aienergyscore .num "
    "{ text-align: right; }</style>"
)


def pytest_html_summary(records: Sequence[Record]) -> str:
    """The results table for pytest-html's summary: the same cells, without the script (pytest-html's page has its
    own) and without links to sections that exist only in our report."""
    content = [results_table(records, False, False), results_notes(records)]
    return "\n".join([PYTEST_HTML_STYLE, '<div class="aienergyscore"><h2>AI Energy Score</h2>', *content, "</div>"])


def pytest_html_extras(record: Record) -> list[dict[str, Any]]:
    """One benchmark's row, what its figure covers, its warnings, and its label, as pytest-html extras. The label is
    drawn from the record as its run folder's will be (the folders are written at the session's end)."""
    from pytest_html import extras

    from pytest_aienergyscore.report.files import run_content

    reasons = [f"not comparable: {reason}" for reason in not_comparable_reasons(record)]
    content = "\n".join(
        [
            results_table([record], False, False),
            bullets([*record.warnings(), *reasons], "no warnings; comparable with the leaderboard"),
        ]
    )
    found = [extras.html(f'{PYTEST_HTML_STYLE}<div class="aienergyscore">{content}</div>')]
    label = run_content(record).files.get(LABEL_FILE)
    if label is not None:
        found.append(extras.png(base64.b64encode(label).decode("ascii"), name=f"energy label: {record.nodeid}"))
    return found
