"""What one benchmark measured (:class:`Record`), and the append-only JSONL store that keeps it safe.

A record is appended and flushed to disk the moment its test ends, so a crash or Ctrl-C later in the session loses
nothing already measured; the session's files are written from this store. Reading tolerates a torn last line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any

from .energy import JOULES_PER_WH, Measurement

RECORD_SCHEMA = 1

# The standard phases of AI Energy Score, in report order; other phase names are kept after them.
STANDARD_PHASES = ("preprocess", "prefill", "decode", "forward", "call")


@dataclass(frozen=True)
class Phase:
    """One metered phase of a benchmark: its window, what was processed in it, and which repetition it was."""

    name: str
    measurement: Measurement
    samples: int | None = None
    tokens: int | None = None
    repetition: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["measurement"] = self.measurement.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Phase:
        values = dict(data)
        values["measurement"] = Measurement.from_dict(values["measurement"])
        return cls(**values)


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
    def phase_names(self) -> list[str]:
        names = list(dict.fromkeys(p.name for p in self.phases))
        return sorted(names, key=lambda n: (STANDARD_PHASES.index(n) if n in STANDARD_PHASES else 99, names.index(n)))

    def repetitions(self) -> int:
        return 1 + max((p.repetition for p in self.phases), default=0)

    def headline_scope(self) -> str:
        """The device whose energy is the headline: gpu when any GPU was metered, else cpu (the device that worked)."""
        scopes = {d.scope for p in self.phases for d in p.measurement.devices}
        return "gpu" if "gpu" in scopes or not scopes else "cpu"

    def phase_joules(self, name: str, scope: str | None = None) -> float:
        """Mean over repetitions of one phase's energy in the given scope (default: the headline scope)."""
        scope = scope or self.headline_scope()
        values = [p.measurement.joules(scope) for p in self.phases if p.name == name]
        return fmean(values) if values else 0.0

    def phase_wh(self, name: str, scope: str | None = None) -> float:
        return self.phase_joules(name, scope) / JOULES_PER_WH

    def total_wh(self, scope: str | None = None) -> float:
        return sum(self.phase_wh(n, scope) for n in self.phase_names())

    def query_count(self) -> int | None:
        """Queries the figures cover: as declared, else the largest sample count of any phase."""
        if self.queries:
            return self.queries
        samples = [p.samples for p in self.phases if p.samples]
        return max(samples) if samples else None

    def wh_per_1000_queries(self, scope: str | None = None) -> float | None:
        queries = self.query_count()
        return self.total_wh(scope) / queries * 1000.0 if queries else None

    def energy_kind(self) -> str:
        kinds = {p.measurement.kind for p in self.phases}
        return "estimate" if "estimate" in kinds else "measured"

    def meter_name(self) -> str:
        names = list(dict.fromkeys(p.measurement.meter for p in self.phases))
        return ",".join(names) if names else str(self.meter.get("name", "none"))

    def warnings(self) -> list[str]:
        seen = dict.fromkeys(f"{p.name}: {w}" for p in self.phases for w in p.measurement.warnings)
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


class RecordStore:
    """Append-only JSONL file of records: one line per finished benchmark, flushed and synced at once."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, record: Record) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record.to_dict(), sort_keys=True, default=str)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def __iter__(self) -> Iterator[Record]:
        return iter(load_records(self.path))


def load_records(path: Path) -> list[Record]:
    """Records from a JSONL store. A torn last line (a crash mid-write) is skipped; a torn middle line is an error."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(Record.from_dict(json.loads(line)))
        except (json.JSONDecodeError, TypeError, KeyError) as err:
            if number == len(lines):
                break
            raise ValueError(f"{path}:{number}: not a record ({err})") from None
    return records


def write_records(path: Path, records: Iterable[Record]) -> None:
    store = RecordStore(path)
    for record in records:
        store.append(record)
