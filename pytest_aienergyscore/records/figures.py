"""Plain data for energy figures, shared by meters (which produce them) and records/reports (which store them).

Every figure carries what it covers (``scope``: gpu, cpu or ram), how it was obtained (``kind``: measured or
estimate) and the meter that produced it, so that no report can print a number without saying what it is.
The rules that grade and derive figures live beside them: :mod:`.confidence` and :mod:`.decode`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pytest_aienergyscore.records.confidence import CONFIDENCE_OK

JOULES_PER_WH = 3600.0

SCOPES = ("gpu", "cpu", "ram")
KINDS = ("measured", "estimate")


@dataclass(frozen=True)
class DeviceEnergy:
    """Energy of one device over one window."""

    device: str
    scope: str
    joules: float
    kind: str
    meter: str

    @property
    def wh(self) -> float:
        return self.joules / JOULES_PER_WH


@dataclass(frozen=True)
class Measurement:
    """One metered window: its energy per device and the facts that say how far to trust it."""

    name: str
    meter: str
    kind: str
    duration_s: float
    devices: tuple[DeviceEnergy, ...] = ()
    started_at: float = 0.0
    counter_period_s: float = 0.0
    confidence: str = CONFIDENCE_OK
    valid: bool = True
    warnings: tuple[str, ...] = ()

    def joules(self, scope: str | None = None) -> float:
        """Total joules, optionally of one scope only."""
        return sum(d.joules for d in self.devices if scope is None or d.scope == scope)

    def scopes(self) -> tuple[str, ...]:
        return tuple(s for s in SCOPES if any(d.scope == s for d in self.devices))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        values = dict(data)
        values["devices"] = tuple(DeviceEnergy(**d) for d in values.get("devices", ()))
        values["warnings"] = tuple(values.get("warnings", ()))
        return cls(**values)


@dataclass(frozen=True)
class MeterInfo:
    """What a meter is and why it was chosen; printed in the terminal header and stored in every record."""

    name: str
    kind: str
    reason: str
    devices: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    counter_period_s: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
