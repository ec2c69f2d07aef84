"""pytest wiring only: options, ini keys, markers, fixtures and hooks.

This module is imported by every pytest run in an environment that has the package, so it imports the standard
library and pytest only; the meters, reports and backends load when a benchmark first asks for them.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_aienergyscore.config.options import OPTION_GROUPS, OPTIONS, OptionSpec

if TYPE_CHECKING:
    from pathlib import Path
    from typing import Literal

    from _pytest.nodes import Node

    from pytest_aienergyscore.config.settings import Settings
    from pytest_aienergyscore.gate.baselines import Baseline
    from pytest_aienergyscore.gate.verdicts import GateOutcome
    from pytest_aienergyscore.records.record import Record
    from pytest_aienergyscore.session.energy_meter import EnergyRecorder
    from pytest_aienergyscore.session.energy_session import EnergySession

# Typed in annotations only: StashKey["Settings"]() would build a typing alias at every start-up (~90 k instructions)
SESSION_KEY: pytest.StashKey[EnergySession] = pytest.StashKey()
SETTINGS_KEY: pytest.StashKey[Settings] = pytest.StashKey()
CONFIGURED_KEY: pytest.StashKey[bool] = pytest.StashKey()  # set unless the run only prints --help or --version
CALL_REPORT_KEY: pytest.StashKey[pytest.TestReport] = pytest.StashKey()
BASELINE_KEY: pytest.StashKey[Baseline | None] = pytest.StashKey()
GATE_KEY: pytest.StashKey[GateOutcome | None] = pytest.StashKey()
EXPORTS_KEY: pytest.StashKey[list[Path]] = pytest.StashKey()
DESELECTED_KEY: pytest.StashKey[bool] = pytest.StashKey()
BENCHMARK_FIXTURES = ("energy_meter", "energy_star")
PER_TEST_HOOKS = "aienergyscore-per-test"
PYTEST_HTML_HOOKS = "aienergyscore-pytest-html"
SESSION_END_HOOKS = "aienergyscore-session-end"
XDIST_AUTO_HOOKS = "aienergyscore-xdist-auto"
SHARD_HOOKS = "aienergyscore-shard"
GROUP = "aienergyscore"
YIELDED_FLAGS_KEY: pytest.StashKey[dict[str, str]] = pytest.StashKey()  # our flags others own -> who


def pytest_addoption(parser: pytest.Parser) -> None:
    for name, heading, rows in OPTION_GROUPS:
        group = parser.getgroup(name, heading)
        for spec in rows:
            if spec.twin is not None:  # the plain flag waits for the conftests: see pytest_load_initial_conftests
                _add_option(group, spec, spec.twin, spec.twin_help())
            else:
                _add_option(group, spec, spec.flag, spec.help_text())
            # typed so that --help says what a key takes; default None keeps "not in the ini file" apart from a value;
            # a text key passes no type: pytest reads it as "string" without a named type's checks (13 k instructions)
            kind: Literal["bool", "linelist"] | None = "bool" if spec.is_flag else "linelist" if spec.multiple else None
            parser.addini(spec.ini, spec.help, kind, None)


def _add_option(group: pytest.OptionGroup, spec: OptionSpec, flag: str, help: str) -> None:
    """One spelling of one row of the options table, as an argparse argument writing to the row's dest."""
    if spec.is_flag:
        group.addoption(flag, dest=spec.dest, action="store_true", default=None, help=help)
        return
    metavar = spec.metavar or ("{" + ",".join(spec.choices) + "}" if spec.choices else None)
    action = "append" if spec.multiple else "store"
    optional = {"nargs": "?", "const": spec.const} if spec.const is not None else {}
    group.addoption(flag, dest=spec.dest, action=action, default=None, metavar=metavar, help=help, **optional)


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser) -> Generator[None, None, None]:
    """Register the plain spelling of a twinned option (``--backend``) only after the initial conftests added theirs.

    Many test suites define their own ``--backend``; registered first, ours would make their conftest die with an
    argparse conflict in every pytest run of an environment that has this plugin. So theirs wins: where a conftest
    (or a plugin loaded before) claimed the flag, ours answers to its twin (``--energy-backend``), its environment
    variable and its ini key only, and the header line says so. The command line is parsed in full after this hook.
    """
    twinned = [spec for spec in OPTIONS if spec.twin is not None]
    claimed_before = {spec.flag for spec in twinned if _claimed(parser, spec.flag)}
    result = yield
    owners = {spec.flag: "another plugin" for spec in twinned if spec.flag in claimed_before}
    for spec in twinned:
        if spec.flag not in claimed_before and _claimed(parser, spec.flag):
            owners[spec.flag] = "conftest.py"
        elif spec.flag not in owners:
            _add_option(parser.getgroup(GROUP), spec, spec.flag, f"Same as {spec.twin}.")
    early_config.stash[YIELDED_FLAGS_KEY] = owners
    if getattr(early_config.known_args_namespace, "numprocesses", None) in ("auto", "logical"):
        early_config.pluginmanager.register(XdistAutoWorkers(), XDIST_AUTO_HOOKS)  # asked before pytest_configure
    return result


class XdistAutoWorkers:
    """Registered only with ``-n auto`` (or ``logical``): a hook at module level costs every pytest start-up."""

    @pytest.hookimpl(optionalhook=True, tryfirst=True)
    def pytest_xdist_auto_num_workers(self, config: pytest.Config) -> int | None:
        """One worker per visible GPU (NVML is asked only now); None lets pytest-xdist count CPUs."""
        from pytest_aienergyscore.session.xdist import auto_num_workers

        return auto_num_workers(config)


def _claimed(parser: pytest.Parser, flag: str) -> bool:
    """Whether some plugin or conftest registered ``flag``. pytest has no public query for this. pytest 9 adds each
    option to its argparse parser at once, whose table of option strings answers in one lookup; older pytest keeps
    them, with their names, on each group (``Parser._anonymous``, ``Parser._groups``)."""
    actions = getattr(getattr(parser, "optparser", None), "_option_string_actions", None)
    if isinstance(actions, dict):
        return flag in actions
    groups = [getattr(parser, "_anonymous", None), *getattr(parser, "_groups", ())]
    return any(flag in option.names() for group in groups if group is not None for option in group.options)


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
        _wire_shard(config, settings_of(config))
    distributed = config.pluginmanager.hasplugin("xdist") and _distributed(config)
    if (given and _compares(settings_of(config))) or distributed:
        _start_ci(config, _session(config), distributed)


def _wire_shard(config: pytest.Config, settings: Settings) -> None:
    """--energy-shard: which share this is and where it writes are settled now, so a missing scheduler variable or a
    share that already finished stops the run before collection; the hooks that keep this share of the collected
    tests are registered only here (no other run imports them)."""
    if settings.shard is None:
        return
    from pytest_aienergyscore.session.shard_run import ShardError, ShardRun, check_rerun, plan_shard

    try:
        plan = plan_shard(settings.shard, settings.run_id, os.environ)
        folder = plan.folder(settings.output_dir)
        if folder is not None and not hasattr(config, "workerinput") and not config.option.collectonly:
            check_rerun(folder)
    except ShardError as err:
        raise pytest.UsageError(str(err)) from None
    if folder is not None:
        _session(config).use_shard_folder(folder, {"run_id": plan.run_id, "index": plan.index, "count": plan.count})
    shard_run = ShardRun(plan, folder, settings.shard_durations, BENCHMARK_FIXTURES)
    config.pluginmanager.register(shard_run, SHARD_HOOKS)


def _compares(settings: Settings) -> bool:
    """A session gated against a baseline file or a saved run: what it compares with is checked before it runs."""
    return settings.baseline is not None or settings.compare is not None


def settings_of(config: pytest.Config) -> Settings:
    """The session's settings, resolved on first use. A run that sets none of our options, ini keys or environment
    variables never resolves them unless a benchmark asks (the defaults cannot be invalid): a project that has the
    plugin installed but no benchmarks pays for option parsing only."""
    settings = config.stash.get(SETTINGS_KEY, None)
    if settings is None:
        from pytest_aienergyscore.config.settings import SettingsError, build_settings

        cli = {spec.dest: getattr(config.option, spec.dest, None) for spec in OPTIONS}
        ini = {spec.dest: _ini(config, spec) for spec in OPTIONS}
        try:
            settings = build_settings(cli, ini, cwd=config.invocation_params.dir, rootdir=config.rootpath)
        except SettingsError as err:
            raise pytest.UsageError(str(err)) from None
        config.stash[SETTINGS_KEY] = settings
    return settings


def _anything_given(config: pytest.Config) -> bool:
    """Whether any of our options came from the command line, an environment variable or the ini file (or -o)."""
    option = config.option
    if any(getattr(option, spec.dest, None) is not None for spec in OPTIONS):
        return True
    # one pass over the environment: ``name in os.environ`` raises and catches a KeyError per absent name
    if not {spec.env for spec in OPTIONS if spec.env is not None}.isdisjoint(os.environ):
        return True
    ini = config.inipath is not None or bool(getattr(option, "override_ini", None))  # else no ini value can exist
    return ini and any(_ini(config, spec) is not None for spec in OPTIONS)


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
    _check_compared_file(config, energy)
    _check_output(config, energy)
    if distributed:
        from pytest_aienergyscore.session.xdist import register

        register(config, energy)


def _check_compared_file(config: pytest.Config, energy: EnergySession) -> None:
    """--energy-compare=FILE.json: a missing or damaged saved run stops the session now, as a bad --energy-baseline
    does. A run number waits for the end: its machine's folder depends on the meter and GPUs the benchmarks use."""
    compare = energy.settings.compare
    if compare is None or not compare.endswith(".json") or hasattr(config, "workerinput") or energy.settings.disabled:
        return
    from pathlib import Path

    from pytest_aienergyscore.gate.history import HistoryError, load_run, select_run

    try:
        load_run(select_run(compare, Path(), Path.cwd()) or Path(compare))  # a file: select_run resolves it or says why
    except HistoryError as err:
        raise pytest.UsageError(f"--energy-compare ({energy.settings.source_of('compare')}): {err}") from None


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


def _ini(config: pytest.Config, spec: OptionSpec) -> str | bool | list[str] | None:
    """One ini key as pytest typed it (a bool for a flag, the lines of a repeatable option, else the text), or None
    when unset or empty; ``resolve_value`` turns each into what the option's parser takes. pytest's own error for a
    bad bool names neither the key nor what is allowed, so it becomes our one line."""
    try:
        value = config.getini(spec.ini)
    except (ValueError, pytest.UsageError) as err:  # pytest 8 raises the ValueError, pytest 9 wraps it
        if "''" in str(err):  # a key left empty (``energy_strict =``) means the default, as for every other key
            return None
        allowed = "true/false, yes/no, on/off, 1/0, y/n, t/f"
        raise pytest.UsageError(f"{spec.flag}: {err} (from ini key {spec.ini}); allowed: {allowed}") from None
    return None if value in (None, "", []) else value


def _session(config: pytest.Config) -> EnergySession:
    """The session's energy state, created on first use."""
    energy = config.stash.get(SESSION_KEY, None)
    if energy is None:
        from pytest_aienergyscore.session.energy_session import EnergySession

        energy = config.stash[SESSION_KEY] = EnergySession(settings_of(config))
        config.pluginmanager.register(SessionEndHooks(), SESSION_END_HOOKS)
        capture = config.pluginmanager.get_plugin("capturemanager")
        if capture is not None:  # pytest redirects stderr's descriptor in tests: progress lines must get past it
            energy.outside_capture = capture.global_and_fixture_disabled
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
        yielded = _yielded_note(config)
        reporter.write_line(
            f"aienergyscore: backend {s.backend} ({s.source_of('backend')}){yielded}, output {s.output_dir}"
        )
        reporter.write_line(f"aienergyscore: meter {energy.meter_description()}")


def _yielded_note(config: pytest.Config) -> str:
    """``; --backend belongs to conftest.py here: use --energy-backend`` where ours gave way, else nothing."""
    twins = {spec.flag: spec.twin for spec in OPTIONS}
    owners = config.stash.get(YIELDED_FLAGS_KEY, {})
    return "".join(f"; {flag} belongs to {owner} here: use {twins[flag]}" for flag, owner in owners.items())


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
    """Register :class:`PerTestHooks` once per session (from collection, or from a fixture requested at run time),
    and :class:`PytestHtmlHooks` beside it when pytest-html writes a report in this session."""
    if not config.pluginmanager.has_plugin(PER_TEST_HOOKS):
        config.pluginmanager.register(PerTestHooks(), PER_TEST_HOOKS)
        if config.pluginmanager.hasplugin("html") and config.getoption("htmlpath", None):
            config.pluginmanager.register(PytestHtmlHooks(), PYTEST_HTML_HOOKS)


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


class PytestHtmlHooks:
    """Our results table and each benchmark's row and label in pytest-html's report, through its own ``extras`` and
    summary hook, since pytest users already open that file. Registered with :class:`PerTestHooks`, and only when
    pytest-html writes a report (``--html``): its hook names exist only then."""

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """On the teardown report: the energy_meter fixture's teardown has made the test's record by then."""
        report: pytest.TestReport = yield
        energy = item.config.stash.get(SESSION_KEY, None)
        if call.when == "teardown" and energy is not None:
            record = next((r for r in reversed(energy.records) if r.nodeid == item.nodeid), None)
            if record is not None:
                from pytest_aienergyscore.report.html import pytest_html_extras

                report.extras = [*getattr(report, "extras", []), *pytest_html_extras(record)]  # type: ignore[attr-defined]
        return report

    def pytest_html_results_summary(
        self, prefix: list[str], summary: list[str], postfix: list[str], session: pytest.Session
    ) -> None:
        energy = session.config.stash.get(SESSION_KEY, None)
        if energy is not None and energy.records:
            from pytest_aienergyscore.report.html import pytest_html_summary

            postfix.append(pytest_html_summary(energy.records))


def pytest_deselected(items: list[pytest.Item]) -> None:
    """Remember that this session runs a selection of the tests: its baseline updates entries, never replaces."""
    if items:
        items[0].config.stash[DESELECTED_KEY] = True


class SessionEndHooks:
    """The end of a session with energy state: registered when that state is created (``_session``), so that a run
    without benchmarks pays nothing for these hooks at start-up."""

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Runs after pytest's own teardown of remaining fixtures, so interrupted tests' phases are in by now."""
        config = session.config
        energy = config.stash.get(SESSION_KEY, None)
        if energy is None:
            return
        energy.finish(exitstatus)  # with no record it writes nothing, and closes a backend a failed benchmark loaded
        if energy.records:
            from pytest_aienergyscore.session.ci import finish_session

            baseline, deselected = config.stash.get(BASELINE_KEY, None), config.stash.get(DESELECTED_KEY, False)
            config.stash[GATE_KEY], config.stash[EXPORTS_KEY] = finish_session(session, energy, baseline, deselected)

    @pytest.hookimpl(trylast=True)  # after the summaries of plugins and conftests, as when this was registered first
    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        energy = config.stash.get(SESSION_KEY, None)
        if energy is None or energy.outcome is None or not energy.records:
            return
        from pytest_aienergyscore.session.ci import write_summary

        write_summary(terminalreporter, energy, config.stash.get(GATE_KEY, None), config.stash.get(EXPORTS_KEY, []))


def __dir__() -> list[str]:
    """What ``dir()`` of this module lists: its hooks and fixtures only (a module's own ``__dir__``, PEP 562).

    pluggy looks for hooks, and pytest for fixtures, in every name that ``dir()`` of a plugin gives, and pytest's
    check of a name for a wrapped fixture costs about 35 k instructions: the helpers, stash keys and imports here
    would cost every pytest run in the environment about 1.5 M instructions of start-up. Everything defined here is
    still importable and in ``vars()``.
    """
    fixture = type(energy_meter)
    return [name for name, value in globals().items() if name.startswith("pytest_") or type(value) is fixture]
