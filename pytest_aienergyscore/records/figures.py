"""Plain data for energy figures, shared by meters (which produce them) and records/reports (which store them).

Every figure carries what it covers (``scope``: gpu, cpu or ram), how it was obtained (``kind``: measured or
estimate) and the meter that produced it, so that no report can print a number without saying what it is.
The decode rule lives here too (:func:`derive_decode`), so that every backend splits generation the same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

JOULES_PER_WH = 3600.0

SCOPES = ("gpu", "cpu", "ram")
KINDS = ("measured", "estimate")

# Confidence of a window, from its length relative to the meter's counter update period.
CONFIDENCE_OK = "ok"
CONFIDENCE_LOW = "low"
CONFIDENCE_UNTRUSTWORTHY = "untrustworthy"


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


# -- the decode rule: one function for every backend ---------------------------------------------------------------

_CONFIDENCE_ORDER = (CONFIDENCE_OK, CONFIDENCE_LOW, CONFIDENCE_UNTRUSTWORTHY)
DECODE_METHOD = "generate pass minus prefill pass, both over the whole dataset"


def derive_decode(prefill: Measurement, generate: Measurement) -> Measurement:
    """Decode = the whole generation pass - the one-new-token prefill pass, per device, as energy_star does.

    Never clamped: the headline is preprocess + prefill + decode, which must equal preprocess + the whole generation
    pass, and a clamp would bias it upward by exactly the noise it hides. Where the split comes out negative on a
    device, the figure is kept as it is and stays valid (the total it sums to is sound); the split is marked
    untrustworthy with one warning, worded alike whichever backend measured it.
    """
    before = {d.device: d.joules for d in prefill.devices}
    uncertainty = {d.device: split_uncertainty_j(prefill, generate, (d.device,)) for d in generate.devices}
    warnings = list(dict.fromkeys((*prefill.warnings, *generate.warnings)))
    devices = []
    for device in generate.devices:
        spent_before = before.get(device.device, 0.0)
        joules = device.joules - spent_before
        if joules < 0:
            warnings.append(
                f"decode split within noise: prefill pass {spent_before:.4g} J > generate pass {device.joules:.4g} J "
                f"on {device.device} (uncertainty ±{uncertainty[device.device]:.2g} J); the total is unaffected"
            )
        devices.append(DeviceEnergy(device.device, device.scope, joules, device.kind, device.meter))
    confidence = max(prefill.confidence, generate.confidence, key=_CONFIDENCE_ORDER.index)
    if any(d.joules < 0 for d in devices):
        confidence = CONFIDENCE_UNTRUSTWORTHY
    return Measurement(
        name="decode",
        meter=generate.meter,
        kind=generate.kind,
        duration_s=max(generate.duration_s - prefill.duration_s, 0.0),
        devices=tuple(devices),
        started_at=generate.started_at,
        counter_period_s=generate.counter_period_s,
        confidence=confidence,
        valid=prefill.valid and generate.valid,
        warnings=tuple(warnings),
    )


def split_uncertainty_j(prefill: Measurement, generate: Measurement, devices: Iterable[str] | None = None) -> float:
    """How far decode = generate - prefill may be off from the meters' granularity alone (all devices by default).

    A counter read at a window's edge may lag by one update period, worth one period of the window's average power;
    the four edges (two windows) and the devices err independently, so their errors add in quadrature.
    """
    wanted = set(devices) if devices is not None else {d.device for d in generate.devices}
    squares = 0.0
    for window in (prefill, generate):
        for device in window.devices:
            if device.device in wanted and window.duration_s > 0:
                edge = abs(device.joules) / window.duration_s * window.counter_period_s
                squares += 2 * edge * edge
    return math.sqrt(squares)


def split_details(prefill: Measurement, generate: Measurement) -> dict[str, Any]:
    """What a decode phase says about its split, the same keys for every backend: both passes and the uncertainty,
    overall and per scope (the headline figure is one scope's, and so is the uncertainty a summary shows)."""
    scopes = {scope: [d.device for d in generate.devices if d.scope == scope] for scope in generate.scopes()}
    return {
        "method": DECODE_METHOD,
        "generate_j": generate.joules(),
        "generate_s": generate.duration_s,
        "prefill_j": prefill.joules(),
        "uncertainty_j": split_uncertainty_j(prefill, generate),
        "uncertainty_by_scope_j": {s: split_uncertainty_j(prefill, generate, names) for s, names in scopes.items()},
    }
