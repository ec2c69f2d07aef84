"""What one benchmark measured (:class:`Record`): its phases, and the one rule (:func:`combine`) every phase figure
goes through, so that a report, the gate and a label add up windows and repetitions the same way.

The append-only store that keeps records safe on disk is :mod:`.records.store`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from statistics import fmean
from typing import Any

from pytest_aienergyscore.records.figures import JOULES_PER_WH, Measurement

RECORD_SCHEMA = 1

# The standard phases of AI Energy Score, in report order; other phase names are kept after them.
STANDARD_PHASES = ("preprocess", "prefill", "decode", "forward", "call")

# Joins the names of nested phases into a path ("generate/decode"), so no phase name may contain it.
PATH_SEPARATOR = "/"


@dataclass(frozen=True)
class Phase:
    """One metered window of a benchmark: its energy, what was processed in it, which repetition it was, and the
    phase it ran inside (``parent``, the name path of the enclosing windows; None for an outermost phase). An inner
    phase's energy is already in its parent's, which is why only outermost phases make the total."""

    name: str
    measurement: Measurement
    samples: int | None = None
    tokens: int | None = None
    repetition: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    parent: str | None = None  # absent in records written before phases knew their parent: those are outermost

    @property
    def path(self) -> str:
        """The phase's name path: ``"decode"`` outermost, ``"generate/decode"`` inside a ``generate`` window."""
        return f"{self.parent}{PATH_SEPARATOR}{self.name}" if self.parent else self.name

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["measurement"] = self.measurement.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Phase:
        values = dict(data)
        values["measurement"] = Measurement.from_dict(values["measurement"])
        return cls(**values)


def per_repetition(windows: Iterable[Phase], value: Callable[[Phase], float | None]) -> dict[int, float]:
    """One phase's ``value`` per repetition: the windows of one repetition add up (a loop of ``decode`` windows over
    batches is one decode of all the batches). Windows without the value (a count nobody gave) are left out."""
    sums: dict[int, float] = {}
    for window in windows:
        number = value(window)
        if number is not None:
            sums[window.repetition] = sums.get(window.repetition, 0.0) + number
    return sums


def combine(windows: Iterable[Phase], value: Callable[[Phase], float | None]) -> float | None:
    """The one rule every phase figure goes through: windows add up within a repetition, and ``--energy-repeat``
    repetitions (each a full run of the same work) are averaged. None when no window has the value."""
    sums = per_repetition(windows, value)
    return fmean(sums.values()) if sums else None


def _count(value: float | None) -> int | float | None:
    """A combined count as the whole number it almost always is (repetitions of one workload count alike)."""
    return int(value) if value is not None and value.is_integer() else value


@dataclass
class Record:
    """Everything about one benchmark (one test): identity, phases, counts, meter and environment."""

    nodeid: str
    backend: str
    model: str | None = None
    task: str | None = None
    processor: str | None = None
    model_class: str | None = None
    queries: int | None = None
    phases: list[Phase] = field(default_factory=list)
    meter: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    outcome: str = "passed"
    started_at: float = 0.0
    finished_at: float = 0.0
    log: str = ""
    # Small text files a backend produced (file name -> content), written into the run folder beside ours.
    attachments: dict[str, str] = field(default_factory=dict)
    schema: int = RECORD_SCHEMA

    # -- derived figures ------------------------------------------------------------------------------------
    # Every figure of a phase goes through :func:`combine`; a phase is named by its path (see :attr:`Phase.path`).
    def phase_paths(self) -> list[str]:
        """Every phase, outermost ones in report order (standard phases first), each followed by its inner phases."""
        first = {p.path: p for p in reversed(self.phases)}
        order = list(dict.fromkeys(p.path for p in self.phases))

        def inside(parent: str | None) -> list[str]:
            children = sorted((q for q in order if first[q].parent == parent), key=lambda q: _rank(first[q].name))
            return [path for child in children for path in (child, *inside(child))]

        listed = inside(None)
        return listed + [q for q in order if q not in listed]  # inner phases whose parent was never recorded

    def phase_names(self) -> list[str]:
        """The outermost phases, in report order: the ones the total adds up (inner ones are parts of them)."""
        return [path for path in self.phase_paths() if self.phase_parent(path) is None]

    def phase_parent(self, path: str) -> str | None:
        return next((p.parent for p in self.phases if p.path == path), None)

    def windows(self, path: str) -> list[Phase]:
        """The windows of one phase (bare name: the outermost phase of that name), every repetition."""
        return [p for p in self.phases if p.path == path]

    def repetitions(self) -> int:
        return 1 + max((p.repetition for p in self.phases), default=0)

    def headline_scope(self) -> str:
        """The device whose energy is the headline: gpu when any GPU was metered, else cpu (the device that worked)."""
        scopes = {d.scope for p in self.phases for d in p.measurement.devices}
        return "gpu" if "gpu" in scopes or not scopes else "cpu"

    def phase_joules(self, path: str, scope: str | None = None) -> float:
        """One phase's energy in the given scope (default: the headline scope), its windows combined by the rule."""
        scope = scope or self.headline_scope()
        return combine(self.windows(path), lambda p: p.measurement.joules(scope)) or 0.0

    def phase_wh(self, path: str, scope: str | None = None) -> float:
        return self.phase_joules(path, scope) / JOULES_PER_WH

    def phase_samples(self, path: str) -> int | float | None:
        return _count(combine(self.windows(path), lambda p: p.samples))

    def phase_tokens(self, path: str) -> int | float | None:
        return _count(combine(self.windows(path), lambda p: p.tokens))

    def total_wh(self, scope: str | None = None) -> float:
        """The outermost phases added up: an inner phase is part of its parent and is never counted again."""
        return sum(self.phase_wh(name, scope) for name in self.phase_names())

    def repetition_totals_wh(self, scope: str | None = None) -> list[float]:
        """The total in each repetition. A phase missing from a repetition counts its combined figure there, so the
        mean of these totals is :meth:`total_wh`."""
        scope = scope or self.headline_scope()
        totals = [0.0] * self.repetitions()
        for name in self.phase_names():
            sums = per_repetition(self.windows(name), lambda p: p.measurement.joules(scope))
            for repetition in range(len(totals)):
                totals[repetition] += sums.get(repetition, self.phase_joules(name, scope)) / JOULES_PER_WH
        return totals

    def phase_breakdown(self, scope: str | None = None) -> list[dict[str, Any]]:
        """Every phase with its parent and combined figures, for reports: inner phases are marked as parts."""
        return [
            {
                "name": self.windows(path)[0].name,
                "parent": self.phase_parent(path),
                "wh": self.phase_wh(path, scope),
                "samples": self.phase_samples(path),
                "tokens": self.phase_tokens(path),
                "windows": len(self.windows(path)),
                "in_total": self.phase_parent(path) is None,
            }
            for path in self.phase_paths()
        ]

    def query_count(self) -> int | None:
        """Queries the figures cover: as declared, else the largest sample count of any phase."""
        if self.queries:
            return self.queries
        samples = [self.phase_samples(path) for path in self.phase_paths()]
        largest = max((s for s in samples if s), default=None)
        return round(largest) if largest else None

    def partial_work(self) -> str | None:
        """Why the figures cover only part of the benchmark's work (it failed or was interrupted), None when it ran
        to the end. Such a record keeps the energy it measured, but no per-query figure and no stars: spread over
        the declared queries, partial work would read as a cheap whole workload."""
        if self.outcome == "passed":
            return None
        how = {"failed": "failed", "interrupted": "was interrupted", "skipped": "was skipped"}.get(self.outcome)
        return f"the benchmark {how or f'ended as {self.outcome}'} (its figures cover only part of the work)"

    def wh_per_1000_queries(self, scope: str | None = None) -> float | None:
        """Wh per 1,000 queries; None when the queries are unknown or the work is partial (:meth:`partial_work`)."""
        if self.partial_work():
            return None
        queries = self.query_count()
        return self.total_wh(scope) / queries * 1000.0 if queries else None

    def energy_kind(self) -> str:
        kinds = {p.measurement.kind for p in self.phases}
        return "estimate" if "estimate" in kinds else "measured"

    def meter_name(self) -> str:
        names = list(dict.fromkeys(p.measurement.meter for p in self.phases))
        return ",".join(names) if names else str(self.meter.get("name", "none"))

    def warnings(self) -> list[str]:
        seen = dict.fromkeys(f"{p.path}: {w}" for p in self.phases for w in p.measurement.warnings)
        return list(seen)

    def all_valid(self) -> bool:
        return all(p.measurement.valid for p in self.phases)

    # -- serialisation -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["phases"] = [p.to_dict() for p in self.phases]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        values = dict(data)
        values["phases"] = [Phase.from_dict(p) for p in values.get("phases", [])]
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})


def _rank(name: str) -> int:
    return STANDARD_PHASES.index(name) if name in STANDARD_PHASES else len(STANDARD_PHASES)
