"""The object behind the ``energy_meter`` fixture: meter any block of code as a named phase of the current test.

    def test_my_model(energy_meter):
        energy_meter.set(model="org/name", task="text_generation")
        with energy_meter.measure("decode", samples=len(prompts)) as phase:
            phase.tokens = run(prompts)

Phases may be several per test and may nest. An inner phase is recorded with its parent (the name path of the windows
around it) and reported as a part of it: the total adds up outermost phases only. Windows of one name in one place add
up, so a loop ``for batch in batches: with energy_meter.measure("decode", samples=len(batch))`` is one decode of all
batches. A block that raises records nothing for itself, but the phases finished before it are kept (its inner phases
move up to its place) and written with the test's outcome.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn

from pytest_aienergyscore.records.figures import Measurement
from pytest_aienergyscore.records.quality import QUALITY_KEY, QualityError, check_quality
from pytest_aienergyscore.records.record import PATH_SEPARATOR, Phase, Record
from pytest_aienergyscore.session.energy_session import EnergySession

log = logging.getLogger("pytest_aienergyscore")
_window_ids = itertools.count()

IDENTITY_FIELDS = ("model", "task", "processor", "model_class", "backend", "queries")


@dataclass
class PhaseHandle:
    """Yielded by :meth:`EnergyRecorder.measure`; set counts known only after the work, read the result after."""

    name: str
    samples: int | None = None
    tokens: int | None = None
    repetition: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    measurement: Measurement | None = None


def _fail(message: str) -> NoReturn:
    """Fail the test in one line, no traceback of ours."""
    import pytest  # only here: the recorder also runs outside pytest (perf scripts)

    pytest.fail(message, pytrace=False)


def check_phase_name(name: object) -> None:
    """A phase name is a non-empty string without the path separator, which joins nested names in reports."""
    if not isinstance(name, str) or not name.strip() or PATH_SEPARATOR in name:
        _fail(
            f"energy_meter.measure: phase name {name!r} is not allowed; use a non-empty name without "
            f"{PATH_SEPARATOR!r} ({PATH_SEPARATOR!r} joins the names of nested phases in reports)"
        )


QUALITY_SOURCES = ("built-in", "custom")


def checked_quality(value: object) -> dict[str, Any]:
    """``energy_meter.set(quality=...)`` as the record keeps it, or QualityError in one line naming the bad value.

    Checked when it is set, not when the record is written, so a bad figure fails the test that gave it while its
    measured phases are still kept. ``{"metric": None, "reason": ...}`` is how a benchmark says nothing could be
    scored (the runner sets it too); the reports then show the reason.
    """
    where = "energy_meter.set(quality=...)"
    if isinstance(value, Mapping) and "metric" in value and value["metric"] is None:
        reason = value.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise QualityError(f"{where}: metric None needs a 'reason' saying why nothing was scored, got {reason!r}")
        return dict(value)
    if not isinstance(value, Mapping):
        raise QualityError(
            f"{where}: {value!r} is not allowed; allowed: a dict with keys metric, value, higher_is_better "
            "(or {'metric': None, 'reason': ...})"
        )
    quality = check_quality(value, where)
    if quality["source"] not in QUALITY_SOURCES:
        raise QualityError(
            f"{where}: source {quality['source']!r} is not allowed; allowed: {', '.join(QUALITY_SOURCES)}"
        )
    return quality


class EnergyRecorder:
    """Collects the phases of one test into a :class:`Record` for the session."""

    def __init__(self, session: EnergySession, nodeid: str, metadata: dict[str, Any] | None = None) -> None:
        self.session = session
        self.nodeid = nodeid
        self.enabled = not session.settings.disabled
        self.phases: list[Phase] = []
        self.open_phases: list[str] = []  # names of the recorded windows open now, outermost first
        # Code under energy_meter is the test's own; energy_star sets the backend it actually used.
        self.identity: dict[str, Any] = {"backend": "custom"}
        self.metadata: dict[str, Any] = {}
        self.notes: list[str] = []
        self.dataset: dict[str, Any] = {}
        self.counts: dict[str, Any] = {}
        self.log_lines: list[str] = []
        self.attachments: dict[str, str] = {}  # files a backend produced, for the run folder
        self.started_at = time.time()
        if metadata:
            self.set(**metadata)

    def set(self, **values: Any) -> None:
        """Tag the benchmark: model, task, processor, model_class, backend, queries; other keys go to metadata.

        ``quality={"metric": ..., "value": ..., "higher_is_better": ...}`` is what the benchmark's energy bought,
        checked here (a bad one fails the test in one line; the phases measured so far are kept).
        """
        for key, value in values.items():
            if key in IDENTITY_FIELDS:
                self.identity[key] = value
            elif key == QUALITY_KEY:
                self._set_quality(value)
            else:
                self.metadata[key] = value

    def _set_quality(self, value: object) -> None:
        try:
            self.metadata[QUALITY_KEY] = checked_quality(value)
        except QualityError as err:
            problem = str(err)
        else:
            return
        _fail(problem)  # outside the except block: one line, no chained exception

    def note(self, text: str) -> None:
        """A sentence that belongs in the record and its report (e.g. which dataset stood in for the official one)."""
        self.notes.append(text)
        self._log(f"note: {text}")

    @contextmanager
    def measure(
        self,
        phase: str,
        samples: int | None = None,
        tokens: int | None = None,
        repetition: int = 0,
        record: bool = True,
        **details: Any,
    ) -> Iterator[PhaseHandle]:
        """Meter the block as phase ``phase``. Counts can be given up front or set on the yielded handle.

        A phase opened inside another is recorded as part of it. ``record=False`` meters without recording a phase
        (the measurement is left on the handle), for windows that only serve to derive another phase, such as a full
        generation from which decode is derived; such a window is no one's parent.
        """
        check_phase_name(phase)
        handle = PhaseHandle(phase, samples, tokens, repetition, dict(details))
        if not self.enabled:
            yield handle
            return
        meter = self.session.meter
        window = f"{phase}#{next(_window_ids)}"
        meter.begin_window(window)
        if record:
            self.open_phases.append(phase)
        try:
            yield handle
        except BaseException:
            meter.cancel_window(window)
            self._log(f"phase {phase}: raised, nothing recorded for it")
            if record:
                self._close_unrecorded()
            raise
        try:
            measurement = meter.end_window(window)
        except BaseException:
            if record:
                self._close_unrecorded()
            raise
        handle.measurement = measurement
        if not record:
            return
        self.open_phases.pop()
        self.add_phase(
            Phase(phase, measurement, handle.samples, handle.tokens, handle.repetition, dict(handle.details))
        )

    def _parent_path(self) -> str | None:
        return PATH_SEPARATOR.join(self.open_phases) or None

    def _close_unrecorded(self) -> None:
        """The innermost open window raised: its finished inner phases take its place, as parts of its parent, so
        that their energy (the only record of that work) still reaches the total when it was outermost."""
        gone = self._parent_path()
        self.open_phases.pop()
        above = self._parent_path()
        for index, phase in enumerate(self.phases):
            if phase.parent == gone:
                self.phases[index] = replace(phase, parent=above)
            elif phase.parent and gone and phase.parent.startswith(gone + PATH_SEPARATOR):
                rest = phase.parent[len(gone) + 1 :]
                self.phases[index] = replace(phase, parent=f"{above}{PATH_SEPARATOR}{rest}" if above else rest)

    def add_phase(self, phase: Phase) -> None:
        """Record a phase (one measured by :meth:`measure`, or elsewhere: optimum-benchmark's report, a derived
        decode). One added while windows are open, without a parent of its own, is part of the innermost."""
        if phase.parent is None and self.open_phases:
            phase = replace(phase, parent=self._parent_path())
        self.phases.append(phase)
        m = phase.measurement
        energies = ", ".join(f"{d.device} {d.joules:.3f} J ({d.scope}, {d.kind})" for d in m.devices)
        where = f" inside {phase.parent}" if phase.parent else ""
        self._log(
            f"phase {phase.name}{where} (repetition {phase.repetition}): {m.duration_s:.3f} s, {energies}, "
            f"meter {m.meter}, samples {phase.samples}, tokens {phase.tokens}"
            + (f"; {'; '.join(m.warnings)}" if m.warnings else "")
        )

    def _log(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        self.log_lines.append(f"{stamp} {text}")
        log.info(text)

    def to_record(self, outcome: str, captured: str = "") -> Record | None:
        """The finished record, or None when nothing was metered (then the test leaves no files)."""
        if not self.phases:
            return None
        info = self.session.meter.info().to_dict() if self.enabled else {}
        log_text = "\n".join(self.log_lines) + "\n"
        if captured:
            log_text += "\n" + captured
        record = Record(
            nodeid=self.nodeid,
            backend=self.identity.get("backend") or "custom",
            model=self.identity.get("model"),
            task=self.identity.get("task"),
            processor=self.identity.get("processor"),
            model_class=self.identity.get("model_class"),
            queries=self.identity.get("queries"),
            phases=list(self.phases),
            meter=info,
            dataset=dict(self.dataset),
            counts=dict(self.counts),
            metadata=dict(self.metadata),
            notes=list(self.notes),
            outcome=outcome,
            started_at=self.started_at,
            finished_at=time.time(),
            log=log_text,
            attachments=dict(self.attachments),
        )
        _fill_quality_samples(record)
        return record


def _fill_quality_samples(record: Record) -> None:
    """A quality figure that did not say how many samples it scored covers the benchmark's queries (declared, else
    the phases' largest sample count): known only once the phases are in, hence here and not in ``set``."""
    quality = record.metadata.get(QUALITY_KEY)
    if isinstance(quality, dict) and quality.get("metric") and quality.get("samples") is None:
        record.metadata[QUALITY_KEY] = {**quality, "samples": record.query_count()}
