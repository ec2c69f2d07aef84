"""What the gate's tests measure: records with chosen figures, and benchmark files whose figures do not depend on
timing (recorded phases) or cannot be changed by it (a burn far from a crafted baseline)."""

from __future__ import annotations

from pytest_aienergyscore.records.figures import DeviceEnergy, Measurement
from pytest_aienergyscore.records.record import Phase, Record

# A benchmark whose per-repetition Wh per 1,000 queries are exactly the numbers in FIXED_WH (1,000 queries each).
FIXED = """
import os
from pytest_aienergyscore.records.figures import DeviceEnergy, Measurement
from pytest_aienergyscore.records.record import Phase

def test_fixed(energy_meter):
    energy_meter.set(model="org/fixed", task="text_classification")
    for repetition, wh in enumerate(float(x) for x in os.environ["FIXED_WH"].split(",")):
        device = DeviceEnergy("cpu", "cpu", wh * 3600.0, "estimate", "estimate")
        window = Measurement("forward", "estimate", "estimate", 10.0, (device,), counter_period_s=0.001)
        energy_meter.add_phase(Phase("forward", window, samples=1000, repetition=repetition))
"""

BURN = """
def test_burn(energy_meter):
    energy_meter.set(model="org/burn", task="text_classification")
    with energy_meter.measure("forward", samples=10):
        sum(i * i for i in range(300_000))
"""

FIXED_ID = "test_fixed.py::test_fixed"
BURN_ID = "test_burn.py::test_burn"


def gate_record(per_rep_wh: list[float], queries: int = 1000, gpu: str | None = None) -> Record:
    """One benchmark whose repetition r used ``per_rep_wh[r]`` Wh; on a named GPU, or on the CPU (RAPL)."""
    phases = []
    for repetition, wh in enumerate(per_rep_wh):
        scope = "gpu" if gpu else "cpu"
        device = DeviceEnergy("cuda:0" if gpu else "cpu", scope, wh * 3600.0, "measured", "nvml" if gpu else "rapl")
        window = Measurement("forward", device.meter, "measured", 10.0, (device,))
        phases.append(Phase("forward", window, samples=queries, repetition=repetition))
    environment = {"gpus": [{"name": gpu, "driver": "550", "power_limit_w": 700.0}] if gpu else [], "cpu": "x86"}
    return Record("t.py::test_x", "pytorch", phases=phases, environment=environment)
