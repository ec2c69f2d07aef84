"""The decode rule: decode = the whole generation pass - the one-new-token prefill pass, as energy_star does.

One function for every backend (the runner for pytorch and vllm, the optimum backend for optimum-benchmark's
windows), so that a split is derived, its uncertainty stated and a negative split flagged alike whoever measured the
passes. Standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from pytest_aienergyscore.records.confidence import CONFIDENCE_UNTRUSTWORTHY, least_confident
from pytest_aienergyscore.records.figures import DeviceEnergy, Measurement

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
    confidence = least_confident(prefill.confidence, generate.confidence)
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
