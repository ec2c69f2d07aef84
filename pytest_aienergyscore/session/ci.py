"""The end of a session that measured something: gate verdicts, the baseline, CI exports, the exit status, and the
summary under pytest's own (results table, notes, gate, exports, errors).

Apart from ``plugin.py`` so that the pytest wiring stays thin; imported only by sessions that recorded a benchmark.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_aienergyscore.records.store import RECORDS_FILE

if TYPE_CHECKING:
    from pytest_aienergyscore.gate.baselines import Baseline
    from pytest_aienergyscore.gate.verdicts import GateOutcome
    from pytest_aienergyscore.session.energy_session import EnergySession


def finish_session(
    session: pytest.Session, energy: EnergySession, baseline: Baseline | None, deselected: bool
) -> tuple[GateOutcome | None, list[Path]]:
    """Gate, baseline and exports (on the controller), then the exit status; returns the verdicts and the exports
    written, for the summary. ``deselected``: the session ran a selection, so a saved baseline is only updated."""
    gate, exports = _finish_ci(session, energy, baseline, deselected)
    _exit_status(session, energy)
    return gate, exports


def _exit_status(session: pytest.Session, energy: EnergySession) -> None:
    """A session whose results could not all be written does not pass: the table says which file and why."""
    if energy.outcome is not None and energy.outcome.interrupted:
        session.exitstatus = pytest.ExitCode.INTERRUPTED
    elif energy.errors and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _finish_ci(
    session: pytest.Session, energy: EnergySession, baseline: Baseline | None, deselected: bool
) -> tuple[GateOutcome | None, list[Path]]:
    """Gate verdicts, the baseline and CI exports, on the controller only, once the session's files are written.

    A failed gate turns a passing run's exit status into 1; the terminal summary, printed after this, still shows
    every figure and verdict. A file that cannot be written is one line in the session's errors.
    """
    if energy.is_worker or energy.outcome is None:
        return None, []
    from pytest_aienergyscore.gate.session_runs import compare_and_save
    from pytest_aienergyscore.gate.verdicts import GateSettings, evaluate, write_gate_file
    from pytest_aienergyscore.report.exports import write_ci_exports
    from pytest_aienergyscore.report.html import write_session_html

    s, session_dir = energy.settings, energy.outcome.session_dir
    rules = GateSettings(s.fail_above, s.strict, s.require_baseline, s.quality_drop)
    runs = compare_and_save(  # --energy-compare, then --energy-autosave
        energy.records, s, energy.session_id, session.config.rootpath, session.config.invocation_params.dir, baseline
    )
    energy.notes += runs.notes
    energy.errors += runs.errors
    gate = evaluate(energy.records, runs.baseline, rules, runs.history)
    gating = s.fail_above is not None or s.require_baseline or s.quality_drop is not None
    if s.baseline is None and s.compare is None and gating:
        energy.notes.append("warning: no --energy-baseline PATH: nothing was compared, the energy gate did not run")
    written: list[Path] = []
    if session_dir is not None:
        if gate is not None:
            _write(energy, written, lambda: [write_gate_file(gate, session_dir)])
        _write(
            energy,
            written,
            lambda: write_ci_exports(
                session_dir, energy.records, gate, s.json_path, energy.session_id, exports_dir=s.exports_dir
            ),
        )
        _write(energy, written, lambda: write_session_html(session_dir, energy.records, s.html_path, s.exports_dir))
    if s.save_baseline is not None:
        _save_baseline(session, energy, s.save_baseline, written, deselected)
    if gate is not None and gate.failed and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if runs.failed and session.exitstatus == pytest.ExitCode.OK:  # a saved run named but unusable
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    return gate, written


def _write(energy: EnergySession, written: list[Path], write: Callable[[], list[Path]]) -> None:
    try:
        written += write()
    except OSError as err:  # a file that cannot be written must not hide the verdicts, nor become an internal error
        energy.errors.append(str(err))


def _save_baseline(
    session: pytest.Session, energy: EnergySession, path: Path, written: list[Path], deselected: bool
) -> None:
    """--energy-save-baseline: a session that ran every benchmark replaces the baseline; one that did not (Ctrl-C,
    -x, a selection) only updates the entries of its passed benchmarks and keeps every other one."""
    from pytest_aienergyscore.gate.baselines import BaselineError, save_baseline

    partial = _partial_session(session, deselected)
    try:
        written.append(save_baseline(energy.records, path, energy.session_id, complete=partial is None))
    except BaselineError as err:
        energy.errors.append(f"baseline not saved: the session {partial}, and the baseline it would update: {err}")
    except OSError as err:
        energy.errors.append(f"baseline not saved: {err}")
    else:
        if partial is not None:
            energy.notes.append(f"baseline {path}: the session {partial}, so only its passed benchmarks were updated")


def _partial_session(session: pytest.Session, deselected: bool) -> str | None:
    """Why this session did not run every benchmark it was given to its end, or None when it did."""
    if session.exitstatus == pytest.ExitCode.INTERRUPTED:
        return "was interrupted"
    stopped = session.shouldfail or session.shouldstop
    if stopped:
        return f"stopped early ({stopped})" if isinstance(stopped, str) else "stopped early"
    if deselected:
        return "ran a selection of the tests"
    return None


def _write_ci_summary(
    terminalreporter: Any, energy: EnergySession, gate: GateOutcome | None, exports: list[Path]
) -> None:
    """Notes on how figures were taken, the gate's verdicts and the exports written, under the results table."""
    for note in energy.notes:
        terminalreporter.write_line(note, yellow=note.startswith("warning"))
    if gate is not None:
        from pytest_aienergyscore.report.gate_table import render_gate

        terminalreporter.write_line("")
        path = gate.baseline_path
        against = f"saved run {path.name[:4]} ({path.parent.name})" if path and _is_saved_run(path) else "the baseline"
        terminalreporter.write_line(f"energy gate against {against} (Wh per 1,000 queries unless marked):")
        *lines, headline = render_gate(gate)
        for line in lines:
            terminalreporter.write_line(line)
        terminalreporter.write_line(headline, red=gate.failed, green=not gate.failed, bold=True)
    if exports:
        terminalreporter.write_line("exports: " + ", ".join(str(path) for path in exports))


def write_summary(terminalreporter: Any, energy: EnergySession, gate: GateOutcome | None, exports: list[Path]) -> None:
    """The "AI Energy Score" section: the results table, how the figures were taken, the gate, exports, errors."""
    from pytest_aienergyscore.report.table import render

    assert energy.outcome is not None

    records = energy.records  # every record, whatever happened to its files
    terminalreporter.section("AI Energy Score")
    for line in render(records):
        terminalreporter.write_line(line)
    if any(record.meter_name() == "estimate" for record in records):
        terminalreporter.write_line(
            f"estimate: CPU time x {energy.settings.cpu_watts:g} W per busy core, not a measurement "
            "(no GPU or readable RAPL counter here)"
        )
    if any(r.meter_name() == "codecarbon" and r.energy_kind() == "estimate" for r in records):
        terminalreporter.write_line(
            "codecarbon (--backend optimum): CPU energy is its estimate (TDP x load, or TDP) and RAM a constant "
            "power, not measurements (no GPU or readable RAPL counter here)"
        )
    _write_ci_summary(terminalreporter, energy, gate, exports)
    _write_errors(terminalreporter, energy)
    outcome = energy.outcome
    if outcome.session_dir is not None:
        terminalreporter.write_line(f"results: {outcome.session_dir}")
    if outcome.plot is not None:
        terminalreporter.write_line(f"plot against the leaderboard: {outcome.plot}")
    if outcome.frontier is not None:
        terminalreporter.write_line(f"energy against quality: {outcome.frontier}")


MAX_ERROR_LINES = 10


def _write_errors(terminalreporter: Any, energy: EnergySession) -> None:
    """Each file that could not be written, one line each (the first few when a full disk failed them all)."""
    errors = energy.errors
    for line in errors[:MAX_ERROR_LINES]:
        terminalreporter.write_line(f"error: {line}", red=True)
    if len(errors) > MAX_ERROR_LINES:
        terminalreporter.write_line(f"error: and {len(errors) - MAX_ERROR_LINES} more like these", red=True)
    outcome = energy.outcome
    folder = outcome.session_dir if outcome is not None and not outcome.interrupted else None  # that one says so
    if errors and folder is not None and (folder / RECORDS_FILE).is_file():
        terminalreporter.write_line(
            f"once the cause is fixed, `aienergyscore report {folder}` writes what is missing", red=True
        )


def _is_saved_run(path: Path | None) -> bool:
    """A baseline that is one of --energy-autosave's runs (``NNNN_<commit>_<date>.json``), named as such."""
    return path is not None and path.name[:4].isdigit() and path.name[4:5] == "_"
