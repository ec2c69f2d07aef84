"""The end of a session with ``--energy-compare`` and ``--energy-autosave``: find the saved run to gate against (and
its history, for the drift rule), then save this session as the next run of its machine.

Why it is shaped this way: the compared run must be read before this session is saved, or "the latest run" would
be the session itself; and the machine is known only from the records (which GPU, which meter), so both happen at
the end, in one step the session calls once. Everything a user should read comes back as lines (notes, errors),
never as a traceback: the session's results are already written and must not be lost to a history problem.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_aienergyscore.gate.baselines import Baseline
from pytest_aienergyscore.gate.history import (
    DEFAULT_FOLDER,
    HistoryError,
    as_baseline,
    history_entries,
    load_run,
    machine_facts,
    machine_id,
    save_run,
    select_run,
)
from pytest_aienergyscore.records.record import Record

if TYPE_CHECKING:
    from pytest_aienergyscore.config.settings import Settings


@dataclass
class HistoryStep:
    """What the step found and did: the baseline to gate against, the drift history, and lines to show."""

    baseline: Baseline | None
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # files that could not be written
    failed: bool = False  # the run to compare with was named (or required) and cannot be used: the session fails


def compare_and_save(
    records: Sequence[Record],
    settings: Settings,
    session_id: str,
    rootdir: Path,
    cwd: Path,
    explicit: Baseline | None,
) -> HistoryStep:
    """Pick the baseline (an explicit --energy-baseline wins over --energy-compare, and says so), then autosave."""
    step = HistoryStep(explicit)
    folder = settings.autosave or rootdir / DEFAULT_FOLDER
    if settings.compare is not None:
        if settings.baseline is not None:
            step.notes.append(
                f"--energy-baseline {settings.baseline} is used; --energy-compare={settings.compare} is not "
                "(an explicit baseline wins)"
            )
        else:
            _compare(step, records, settings, folder, cwd)
    if settings.autosave is not None:
        _autosave(step, records, settings, session_id, rootdir)
    return step


def _compare(step: HistoryStep, records: Sequence[Record], settings: Settings, folder: Path, cwd: Path) -> None:
    machine = folder / machine_id(machine_facts(records))
    try:
        path = select_run(str(settings.compare), machine, cwd)
        run = load_run(path) if path is not None else None
    except HistoryError as err:
        step.notes.append(f"error: --energy-compare: {err}")
        step.failed = True
        return
    if run is None:
        missing = f"no saved run of this machine in {machine} to compare with (save runs with --energy-autosave)"
        if settings.require_baseline:
            step.notes.append(f"error: --energy-compare: {missing}, and --energy-require-baseline was given")
            step.failed = True
        else:
            step.notes.append(f"warning: {missing}; nothing was compared")
        return
    step.baseline = as_baseline(run)
    step.history, skipped = history_entries(run, (r.nodeid for r in records))
    step.notes.append(f"compared with saved run {run.label()}: {run.path}")
    step.notes += [f"warning: {line}" for line in skipped]


def _autosave(step: HistoryStep, records: Sequence[Record], settings: Settings, session_id: str, rootdir: Path) -> None:
    assert settings.autosave is not None
    try:
        path = save_run(records, settings.autosave, rootdir, session_id, settings)
    except OSError as err:
        step.errors.append(f"run not saved (--energy-autosave): {err}")
        return
    step.notes.append(f"saved as run {path.name.split('_')[0]}: {path}")
