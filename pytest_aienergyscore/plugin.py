"""pytest wiring only: options, ini keys, markers, fixtures and hooks.

This module is imported by every pytest run in an environment that has the package, so it imports the standard
library and pytest only; the meters, reports and backends load when a benchmark first asks for them.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from .settings import OPTIONS, SettingsError, build_settings

if TYPE_CHECKING:
    from .recorder import EnergyRecorder
    from .session import EnergySession

SESSION_KEY = pytest.StashKey["EnergySession"]()
CALL_REPORT_KEY = pytest.StashKey[pytest.TestReport]()
BENCHMARK_FIXTURES = ("energy_meter", "energy_star")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("aienergyscore", "energy benchmarks, AI Energy Score style (pytest-aienergyscore)")
    for spec in OPTIONS:
        if spec.is_flag:
            group.addoption(spec.flag, dest=spec.dest, action="store_true", default=None, help=spec.help_text())
        else:
            metavar = spec.metavar or ("{" + ",".join(spec.choices) + "}" if spec.choices else None)
            group.addoption(spec.flag, dest=spec.dest, default=None, metavar=metavar, help=spec.help_text())
        parser.addini(spec.ini, spec.help, default=None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "energy(model=None, task=None, model_class=None, **metadata): tag an energy benchmark with what it measures",
    )
    if config.option.help or config.option.version:
        return
    cli = {spec.dest: getattr(config.option, spec.dest, None) for spec in OPTIONS}
    ini = {spec.dest: _ini(config, spec.ini) for spec in OPTIONS}
    try:
        settings = build_settings(cli, ini, cwd=config.invocation_params.dir, rootdir=config.rootpath)
    except SettingsError as err:
        raise pytest.UsageError(str(err)) from None
    from .session import EnergySession

    config.stash[SESSION_KEY] = EnergySession(settings)


def _ini(config: pytest.Config, name: str) -> str | None:
    value = config.getini(name)
    return None if value in (None, "", []) else str(value)


def _session(config: pytest.Config) -> EnergySession:
    return config.stash[SESSION_KEY]


def pytest_collection_finish(session: pytest.Session) -> None:
    """Say which meter will be used and why, once, and only in sessions that contain benchmarks."""
    energy = session.config.stash.get(SESSION_KEY, None)
    if energy is None or energy.settings.disabled:
        return
    if not any(name in getattr(item, "fixturenames", ()) for item in session.items for name in BENCHMARK_FIXTURES):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        s = energy.settings
        reporter.write_line(f"aienergyscore: backend {s.backend} ({s.source_of('backend')}), output {s.output_dir}")
        reporter.write_line(f"aienergyscore: meter {energy.meter_description()}")


@pytest.fixture
def energy_meter(request: pytest.FixtureRequest) -> Iterator[EnergyRecorder]:
    """Meter code as named phases of this test: ``with energy_meter.measure("decode", samples=n): ...``."""
    from .recorder import EnergyRecorder

    energy = _session(request.config)
    if not energy.settings.disabled:
        from .meters import MeterUnavailable

        try:
            energy.meter  # noqa: B018 - created here so a meter that cannot work fails setup in one line
        except MeterUnavailable as err:
            pytest.fail(str(err), pytrace=False)
    marker = request.node.get_closest_marker("energy")
    metadata: dict[str, Any] = dict(marker.kwargs) if marker else {}
    recorder = EnergyRecorder(energy, request.node.nodeid, metadata)
    yield recorder
    report = request.node.stash.get(CALL_REPORT_KEY, None)
    outcome = report.outcome if report is not None else "interrupted"
    record = recorder.to_record(outcome, _captured(report))
    if record is not None:
        energy.add(record)


@pytest.fixture
def energy_star(request: pytest.FixtureRequest, energy_meter: EnergyRecorder) -> Any:
    """Run the AI Energy Score protocol: ``energy_star(task="text_generation", model="org/name")`` -> Record.

    Uses the session's backend (``--backend``), dataset and sample options. Keyword overrides change the task's
    generation/call parameters (e.g. ``max_new_tokens=4``); ``skip_unavailable=True`` skips, rather than fails,
    when the model cannot be had on this machine. Bad input fails the test in one line.
    """
    from .star import EnergyStar

    return EnergyStar(_session(request.config), energy_meter)


def _captured(report: pytest.TestReport | None) -> str:
    if report is None:
        return ""
    parts = [f"----- {title} -----\n{content}" for title, content in report.sections if content.strip()]
    if report.longreprtext:
        parts.append(f"----- failure -----\n{report.longreprtext}")
    return "\n".join(parts)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    if call.when == "call":
        item.stash[CALL_REPORT_KEY] = report
    return report


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Runs after pytest's own teardown of remaining fixtures, so interrupted tests' phases are in by now."""
    energy = session.config.stash.get(SESSION_KEY, None)
    if energy is not None and energy.records:
        energy.finish(exitstatus)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    energy = config.stash.get(SESSION_KEY, None)
    if energy is None or energy.outcome is None or not energy.outcome.runs:
        return
    from .report.table import render

    outcome = energy.outcome
    terminalreporter.section("AI Energy Score")
    for line in render([run.record for run in outcome.runs]):
        terminalreporter.write_line(line)
    if any(run.record.energy_kind() == "estimate" for run in outcome.runs):
        terminalreporter.write_line(
            f"estimate: CPU time x {energy.settings.cpu_watts:g} W per busy core, not a measurement "
            "(no GPU or readable RAPL counter here)"
        )
    for run in outcome.runs:
        if run.error:
            terminalreporter.write_line(f"could not write files for {run.record.nodeid}: {run.error}", red=True)
    terminalreporter.write_line(f"results: {outcome.session_dir}")
