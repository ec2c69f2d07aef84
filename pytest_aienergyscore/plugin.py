"""pytest wiring only: options, ini keys, markers, fixtures and hooks.

This module is imported by every pytest run in an environment that has the package, so it imports the standard
library and pytest only; the meters, reports and backends load when a benchmark first asks for them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_aienergyscore.config.options import OPTIONS

if TYPE_CHECKING:
    from pathlib import Path

    from _pytest.nodes import Node

    from pytest_aienergyscore.config.settings import Settings
    from pytest_aienergyscore.gate.baselines import Baseline
    from pytest_aienergyscore.gate.verdicts import GateOutcome
    from pytest_aienergyscore.records.record import Record
    from pytest_aienergyscore.session.energy_meter import EnergyRecorder
    from pytest_aienergyscore.session.energy_session import EnergySession

SESSION_KEY = pytest.StashKey["EnergySession"]()
SETTINGS_KEY = pytest.StashKey["Settings"]()
CONFIGURED_KEY = pytest.StashKey[bool]()  # set unless the run only prints --help or --version
CALL_REPORT_KEY = pytest.StashKey[pytest.TestReport]()
BASELINE_KEY: pytest.StashKey[Baseline | None] = pytest.StashKey()
GATE_KEY: pytest.StashKey[GateOutcome | None] = pytest.StashKey()
EXPORTS_KEY: pytest.StashKey[list[Path]] = pytest.StashKey()
DESELECTED_KEY = pytest.StashKey[bool]()
BENCHMARK_FIXTURES = ("energy_meter", "energy_star")
PER_TEST_HOOKS = "aienergyscore-per-test"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("aienergyscore", "energy benchmarks, AI Energy Score style (pytest-aienergyscore)")
    for spec in OPTIONS:
        if spec.is_flag:
            group.addoption(spec.flag, dest=spec.dest, action="store_true", default=None, help=spec.help_text())
        else:
            metavar = spec.metavar or ("{" + ",".join(spec.choices) + "}" if spec.choices else None)
            action = "append" if spec.multiple else "store"
            optional = {"nargs": "?", "const": spec.const} if spec.const is not None else {}
            group.addoption(
                spec.flag,
                dest=spec.dest,
                action=action,
                default=None,
                metavar=metavar,
                help=spec.help_text(),
                **optional,
            )
        parser.addini(spec.ini, spec.help, default=None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "energy(model=None, task=None, processor=None, model_class=None, backend=None, queries=None): tag an energy "
        "benchmark with what it measures (any other keyword is an error)",
    )
    if config.option.help or config.option.version:
        return
    config.stash[CONFIGURED_KEY] = True
    given = _anything_given(config)
    if given:
        settings_of(config)  # a value given anywhere is checked now: a bad one stops the run before any test
    distributed = config.pluginmanager.hasplugin("xdist") and _distributed(config)
    if (given and settings_of(config).baseline is not None) or distributed:
        _start_ci(config, _session(config), distributed)


def settings_of(config: pytest.Config) -> Settings:
    """The session's settings, resolved on first use. A run that sets none of our options, ini keys or environment
    variables never resolves them unless a benchmark asks (the defaults cannot be invalid): a project that has the
    plugin installed but no benchmarks pays for option parsing only."""
    settings = config.stash.get(SETTINGS_KEY, None)
    if settings is None:
        from pytest_aienergyscore.config.settings import SettingsError, build_settings

        cli = {spec.dest: getattr(config.option, spec.dest, None) for spec in OPTIONS}
        ini = {spec.dest: _ini(config, spec.ini) for spec in OPTIONS}
        try:
            settings = build_settings(cli, ini, cwd=config.invocation_params.dir, rootdir=config.rootpath)
        except SettingsError as err:
            raise pytest.UsageError(str(err)) from None
        config.stash[SETTINGS_KEY] = settings
    return settings


def _anything_given(config: pytest.Config) -> bool:
    """Whether any of our options came from the command line, an environment variable or the ini file (or -o)."""
    option, environ = config.option, os.environ
    return any(
        getattr(option, spec.dest, None) is not None
        or (spec.env is not None and spec.env in environ)
        or _ini(config, spec.ini) is not None
        for spec in OPTIONS
    )


def _start_ci(config: pytest.Config, energy: EnergySession, distributed: bool) -> None:
    """Read the baseline now (a bad file must stop the session before hours of benchmarks, not after them) and
    wire pytest-xdist when this session is distributed (its module is not even imported otherwise)."""
    settings = energy.settings
    if settings.baseline is not None and not hasattr(config, "workerinput") and not settings.disabled:
        from pytest_aienergyscore.gate.baselines import BaselineError, baseline_for_session

        try:
            config.stash[BASELINE_KEY] = baseline_for_session(settings.baseline, settings.require_baseline)
        except BaselineError as err:
            raise pytest.UsageError(f"--energy-baseline ({settings.source_of('baseline')}): {err}") from None
    _check_output(config, energy)
    if distributed:
        from pytest_aienergyscore.session.xdist import register

        register(config, energy)


def _check_output(config: pytest.Config, energy: EnergySession) -> None:
    """Stop before any benchmark runs when its results could not be written (one line naming the folder and why),
    rather than after hours of measuring. The controller checks; workers write nothing."""
    if hasattr(config, "workerinput") or energy.settings.disabled:
        return
    problem = energy.output_problem()
    if problem:
        raise pytest.UsageError(problem)


def _distributed(config: pytest.Config) -> bool:
    """An xdist worker, or the controller of a distributed session (xdist has turned ``-n`` into ``--tx`` by now)."""
    if hasattr(config, "workerinput"):
        return True
    return config.getoption("dist", "no") != "no" and bool(config.getoption("tx", None))


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto``: one worker per visible GPU (NVML is asked only now); None lets pytest-xdist count CPUs."""
    from pytest_aienergyscore.session.xdist import auto_num_workers

    return auto_num_workers(config)


def _ini(config: pytest.Config, name: str) -> str | None:
    value = config.getini(name)
    return None if value in (None, "", []) else str(value)


def _session(config: pytest.Config) -> EnergySession:
    """The session's energy state, created on first use."""
    energy = config.stash.get(SESSION_KEY, None)
    if energy is None:
        from pytest_aienergyscore.session.energy_session import EnergySession

        energy = config.stash[SESSION_KEY] = EnergySession(settings_of(config))
    return energy


def pytest_collection_finish(session: pytest.Session) -> None:
    """Wire the per-test hooks, and say which meter will be used and why, only in sessions that contain benchmarks:
    once installed, this plugin loads in every pytest run, and an unrelated suite must not pay for it per test."""
    config = session.config
    if not config.stash.get(CONFIGURED_KEY, False):
        return
    metered = any(name in getattr(item, "fixturenames", ()) for item in session.items for name in BENCHMARK_FIXTURES)
    if metered or _any_marked(session.items, "energy"):
        _wire_per_test_hooks(config)
    if not metered or settings_of(config).disabled:
        return
    energy = _session(config)
    _check_output(config, energy)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        s = energy.settings
        reporter.write_line(f"aienergyscore: backend {s.backend} ({s.source_of('backend')}), output {s.output_dir}")
        reporter.write_line(f"aienergyscore: meter {energy.meter_description()}")


def _any_marked(items: list[pytest.Item], name: str) -> bool:
    """Whether any item carries marker ``name``, on itself or on a class, module or package above it.

    ``get_closest_marker`` per item would walk every parent chain again; here each parent is looked at once, so a
    large unrelated suite pays one short pass over its items.
    """
    seen: dict[int, bool] = {}

    def marked(node: Node | None) -> bool:
        if node is None:
            return False
        key = id(node)
        if key not in seen:
            seen[key] = any(mark.name == name for mark in node.own_markers) or marked(node.parent)
        return seen[key]

    return any(any(mark.name == name for mark in item.own_markers) or marked(item.parent) for item in items)


def _wire_per_test_hooks(config: pytest.Config) -> None:
    """Register :class:`PerTestHooks` once per session (from collection, or from a fixture requested at run time)."""
    if not config.pluginmanager.has_plugin(PER_TEST_HOOKS):
        config.pluginmanager.register(PerTestHooks(), PER_TEST_HOOKS)


@pytest.fixture
def energy_meter(request: pytest.FixtureRequest) -> Iterator[EnergyRecorder]:
    """Meter code as named phases of this test: ``with energy_meter.measure("decode", samples=n): ...``."""
    from pytest_aienergyscore.session.energy_meter import EnergyRecorder

    _wire_per_test_hooks(request.config)  # already done at collection, unless a test asked by getfixturevalue
    energy = _session(request.config)
    if not energy.settings.disabled:
        from pytest_aienergyscore.meters import MeterUnavailable

        problem = ""
        try:
            energy.meter  # noqa: B018 - created here so a meter that cannot work fails setup in one line
        except MeterUnavailable as err:
            problem = str(err)
        if problem:  # outside the except block: one line, no chained "During handling" copy
            pytest.fail(problem, pytrace=False)
    marker = request.node.get_closest_marker("energy")
    metadata: dict[str, Any] = dict(marker.kwargs) if marker else {}
    recorder = EnergyRecorder(energy, request.node.nodeid, metadata)
    yield recorder
    report = request.node.stash.get(CALL_REPORT_KEY, None)
    outcome = report.outcome if report is not None else "interrupted"
    record = recorder.to_record(outcome, _captured(report))
    if record is not None:
        energy.add(record)
        _attach_energy(request, record)


def _attach_energy(request: pytest.FixtureRequest, record: Record) -> None:
    """Energy figures as JUnit XML properties, and per round in pytest-benchmark's extra_info when it ran too."""
    from pytest_aienergyscore.report.exports import benchmark_extra_info, junit_properties

    request.node.user_properties.extend(junit_properties(record))
    benchmark = (getattr(request.node, "funcargs", None) or {}).get("benchmark")
    if benchmark is not None and isinstance(getattr(benchmark, "extra_info", None), dict):
        stats = getattr(getattr(benchmark, "stats", None), "stats", None)
        benchmark.extra_info.update(benchmark_extra_info(record, getattr(stats, "rounds", None)))


@pytest.fixture
def energy_star(request: pytest.FixtureRequest, energy_meter: EnergyRecorder) -> Any:
    """Run the AI Energy Score protocol: ``energy_star(task="text_generation", model="org/name")`` -> Record.

    Uses the session's backend (``--backend``), dataset and sample options. Keyword overrides change the task's
    generation/call parameters (e.g. ``max_new_tokens=4``); ``skip_unavailable=True`` skips, rather than fails,
    when the model cannot be had on this machine. Bad input fails the test in one line.
    """
    from pytest_aienergyscore.session.energy_star import EnergyStar

    return EnergyStar(_session(request.config), energy_meter)


def _captured(report: pytest.TestReport | None) -> str:
    if report is None:
        return ""
    parts = [f"----- {title} -----\n{content}" for title, content in report.sections if content.strip()]
    if report.longreprtext:
        parts.append(f"----- failure -----\n{report.longreprtext}")
    return "\n".join(parts)


class PerTestHooks:
    """The hooks pytest calls for every test. Registered only in sessions with energy benchmarks (a test that uses
    our fixtures or the ``energy`` marker, see :func:`pytest_collection_finish`): every other suite in the
    environment runs none of our code per test."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        """A misspelt ``energy`` marker keyword fails the test in one line, before its fixtures: kept silently, it
        would leave the record without the model or task the author meant to give it."""
        marker = item.get_closest_marker("energy")
        if marker is None:
            return
        from pytest_aienergyscore.session.energy_meter import IDENTITY_FIELDS

        unknown = [key for key in marker.kwargs if key not in IDENTITY_FIELDS]
        if marker.args or unknown:
            bad = f"unknown keyword {', '.join(unknown)}" if unknown else f"positional argument {marker.args[0]!r}"
            pytest.fail(f"@pytest.mark.energy: {bad}; allowed keywords: {', '.join(IDENTITY_FIELDS)}", pytrace=False)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """Keep the call phase's report: the energy_meter fixture's teardown records the test's outcome from it."""
        report: pytest.TestReport = yield
        if call.when == "call":
            item.stash[CALL_REPORT_KEY] = report
        return report


def pytest_deselected(items: list[pytest.Item]) -> None:
    """Remember that this session runs a selection of the tests: its baseline updates entries, never replaces."""
    if items:
        items[0].config.stash[DESELECTED_KEY] = True


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Runs after pytest's own teardown of remaining fixtures, so interrupted tests' phases are in by now."""
    energy = session.config.stash.get(SESSION_KEY, None)
    if energy is not None and not energy.records:
        energy.finish(exitstatus)  # writes nothing; closes a backend loaded by a benchmark that failed before a record
    elif energy is not None:
        energy.finish(exitstatus)
        _finish_ci(session, energy)
        _exit_status(session, energy)


def _exit_status(session: pytest.Session, energy: EnergySession) -> None:
    """A session whose results could not all be written does not pass: the table says which file and why."""
    if energy.outcome is not None and energy.outcome.interrupted:
        session.exitstatus = pytest.ExitCode.INTERRUPTED
    elif energy.errors and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _finish_ci(session: pytest.Session, energy: EnergySession) -> None:
    """Gate verdicts, the baseline and CI exports, on the controller only, once the session's files are written.

    A failed gate turns a passing run's exit status into 1; the terminal summary, printed after this, still shows
    every figure and verdict. A file that cannot be written is one line in the session's errors.
    """
    if energy.is_worker or energy.outcome is None:
        return
    from pytest_aienergyscore.gate.verdicts import GateSettings, evaluate, write_gate_file
    from pytest_aienergyscore.report.exports import write_ci_exports

    s, config, session_dir = energy.settings, session.config, energy.outcome.session_dir
    rules = GateSettings(s.fail_above, s.strict, s.require_baseline)
    gate = evaluate(energy.records, config.stash.get(BASELINE_KEY, None), rules)
    config.stash[GATE_KEY] = gate
    if s.baseline is None and (s.fail_above is not None or s.require_baseline):
        energy.notes.append("warning: no --energy-baseline PATH: nothing was compared, the energy gate did not run")
    written: list[Path] = []
    if session_dir is not None:
        if gate is not None:
            _write(energy, written, lambda: [write_gate_file(gate, session_dir)])
        _write(
            energy, written, lambda: write_ci_exports(session_dir, energy.records, gate, s.json_path, energy.session_id)
        )
    if s.save_baseline is not None:
        _save_baseline(session, energy, s.save_baseline, written)
    config.stash[EXPORTS_KEY] = written
    if gate is not None and gate.failed and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _write(energy: EnergySession, written: list[Path], write: Callable[[], list[Path]]) -> None:
    try:
        written += write()
    except OSError as err:  # a file that cannot be written must not hide the verdicts, nor become an internal error
        energy.errors.append(str(err))


def _save_baseline(session: pytest.Session, energy: EnergySession, path: Path, written: list[Path]) -> None:
    """--energy-save-baseline: a session that ran every benchmark replaces the baseline; one that did not (Ctrl-C,
    -x, a selection) only updates the entries of its passed benchmarks and keeps every other one."""
    from pytest_aienergyscore.gate.baselines import BaselineError, save_baseline

    partial = _partial_session(session)
    try:
        written.append(save_baseline(energy.records, path, energy.session_id, complete=partial is None))
    except BaselineError as err:
        energy.errors.append(f"baseline not saved: the session {partial}, and the baseline it would update: {err}")
    except OSError as err:
        energy.errors.append(f"baseline not saved: {err}")
    else:
        if partial is not None:
            energy.notes.append(f"baseline {path}: the session {partial}, so only its passed benchmarks were updated")


def _partial_session(session: pytest.Session) -> str | None:
    """Why this session did not run every benchmark it was given to its end, or None when it did."""
    if session.exitstatus == pytest.ExitCode.INTERRUPTED:
        return "was interrupted"
    stopped = session.shouldfail or session.shouldstop
    if stopped:
        return f"stopped early ({stopped})" if isinstance(stopped, str) else "stopped early"
    if session.config.stash.get(DESELECTED_KEY, False):
        return "ran a selection of the tests"
    return None


def _write_ci_summary(terminalreporter: Any, config: pytest.Config, energy: EnergySession) -> None:
    """Notes on how figures were taken, the gate's verdicts and the exports written, under the results table."""
    for note in energy.notes:
        terminalreporter.write_line(note, yellow=note.startswith("warning"))
    gate = config.stash.get(GATE_KEY, None)
    if gate is not None:
        from pytest_aienergyscore.report.gate_table import render_gate

        terminalreporter.write_line("")
        terminalreporter.write_line("energy gate against the baseline (Wh per 1,000 queries unless marked):")
        *lines, headline = render_gate(gate)
        for line in lines:
            terminalreporter.write_line(line)
        terminalreporter.write_line(headline, red=gate.failed, green=not gate.failed, bold=True)
    exports = config.stash.get(EXPORTS_KEY, [])
    if exports:
        terminalreporter.write_line("exports: " + ", ".join(str(path) for path in exports))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    energy = config.stash.get(SESSION_KEY, None)
    if energy is None or energy.outcome is None or not energy.records:
        return
    from pytest_aienergyscore.report.table import render

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
    _write_ci_summary(terminalreporter, config, energy)
    _write_errors(terminalreporter, energy)
    outcome = energy.outcome
    if outcome.session_dir is not None:
        terminalreporter.write_line(f"results: {outcome.session_dir}")
    if outcome.plot is not None:
        terminalreporter.write_line(f"plot against the leaderboard: {outcome.plot}")


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
    if errors and folder is not None and (folder / "records.jsonl").is_file():
        terminalreporter.write_line(
            f"once the cause is fixed, `aienergyscore report {folder}` writes what is missing", red=True
        )
