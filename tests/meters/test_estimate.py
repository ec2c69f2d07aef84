"""The CPU-time estimate, against real CPU work: this process's, and a child's that only the machine scope sees."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from pytest_aienergyscore.meters import create_meter
from pytest_aienergyscore.meters.estimate import EstimateMeter
from pytest_aienergyscore.records.figures import DeviceEnergy, Measurement
from pytest_aienergyscore.records.record import Phase, Record
from pytest_aienergyscore.report.files import energy_summary

BURN_CPU_S = 0.2


def burn_cpu(seconds: float = BURN_CPU_S) -> float:
    """Spin until this process has used ``seconds`` of CPU (not wall) time, so a busy machine does not shorten it."""
    start = time.process_time()
    x = 0
    while time.process_time() - start < seconds:
        for i in range(2000):
            x += i * i
    return time.process_time() - start


def test_process_scope_counts_cpu_seconds_times_watts() -> None:
    meter = EstimateMeter(watts_per_core=15.0)
    meter.begin_window("burn")
    cpu0 = time.process_time()
    burn_cpu()
    cpu_used = time.process_time() - cpu0
    m = meter.end_window("burn")
    assert cpu_used >= BURN_CPU_S
    assert m.joules() == pytest.approx(cpu_used * 15.0, rel=0.1, abs=0.15)


def test_energy_doubles_when_watts_double() -> None:
    single, double = EstimateMeter(watts_per_core=10.0), EstimateMeter(watts_per_core=20.0)
    single.begin_window("burn")
    double.begin_window("burn")
    burn_cpu()
    j_double = double.end_window("burn").joules()
    j_single = single.end_window("burn").joules()
    assert j_single > 0.5 * BURN_CPU_S * 10.0
    assert j_double / j_single == pytest.approx(2.0, rel=0.05)


def test_sleeping_costs_next_to_nothing() -> None:
    meter = EstimateMeter(watts_per_core=10.0)
    meter.begin_window("sleep")
    time.sleep(0.3)
    m = meter.end_window("sleep")
    assert m.duration_s >= 0.3
    assert m.joules() < 0.05 * 10.0  # under 50 ms of CPU while asleep


def test_labelled_as_an_estimate_of_cpu_energy() -> None:
    meter = EstimateMeter(watts_per_core=10.0)
    meter.begin_window("w")
    burn_cpu(0.02)
    m = meter.end_window("w")
    assert (m.meter, m.kind) == ("estimate", "estimate")
    [dev] = m.devices
    assert (dev.device, dev.scope, dev.kind, dev.meter) == ("cpu", "cpu", "estimate", "estimate")
    assert m.scopes() == ("cpu",)
    [fact] = meter.device_facts()
    assert fact["watts_per_core"] == 10.0
    assert fact["cpu_scope"] == "process"
    assert "10 W per busy core" in fact["method"]
    assert meter.info().kind == "estimate"


def test_machine_scope_sees_a_running_child_that_process_scope_does_not() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys\nprint('busy', flush=True)\nwhile True: pass"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "busy\n"
        machine = EstimateMeter(watts_per_core=10.0, scope="machine")
        process = EstimateMeter(watts_per_core=10.0, scope="process")
        machine.begin_window("child")
        process.begin_window("child")
        time.sleep(0.6)
        own = process.end_window("child")
        seen = machine.end_window("child")
        assert child.poll() is None  # still running: its CPU time is not in this process's rusage yet
    finally:
        child.kill()
        child.wait()
    # the child spins a whole core (or, on a crowded machine, shares it with work that counts as busy too)
    assert seen.joules() > 0.5 * seen.duration_s * 10.0
    assert own.joules() < 0.1 * own.duration_s * 10.0
    [dev] = seen.devices
    assert (dev.device, dev.scope, dev.kind, dev.meter) == ("cpu-machine", "cpu", "estimate", "estimate")
    assert seen.counter_period_s == pytest.approx(0.01)  # /proc/stat ticks


def test_process_scope_counts_a_child_once_it_is_waited_for() -> None:
    meter = EstimateMeter(watts_per_core=10.0)
    meter.begin_window("child")
    code = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.2: pass"
    subprocess.run([sys.executable, "-c", code], check=True)
    m = meter.end_window("child")
    assert m.joules() >= 0.2 * 10.0 * 0.95


def test_an_unknown_scope_is_refused() -> None:
    with pytest.raises(ValueError, match="'gpu'"):
        EstimateMeter(scope="gpu")


def test_create_meter_passes_watts_and_scope() -> None:
    meter = create_meter("estimate", cpu_watts=7.5, cpu_scope="machine")
    assert isinstance(meter, EstimateMeter)
    assert (meter.watts_per_core, meter.scope) == (7.5, "machine")
    assert meter.device_scopes() == {"cpu-machine": "cpu"}
    assert "--energy-meter estimate" in meter.reason


@pytest.mark.parametrize(
    ("scope", "words"),
    [
        ("process", "estimated CPU energy of this pytest process and the child processes it waited for"),
        ("machine", "estimated CPU energy of the whole machine: every process's busy CPU time x 10 W per core"),
    ],
)
def test_the_summary_words_the_scope_the_estimate_really_had(scope: str, words: str) -> None:
    meter = EstimateMeter(watts_per_core=10.0, scope=scope)
    meter.begin_window("w")
    burn_cpu(0.02)
    record = Record(
        nodeid="t",
        backend="custom",
        phases=[Phase("call", meter.end_window("w"), samples=1)],
        meter=meter.info().to_dict(),
    )
    assert record.meter["details"]["cpu_scope"] == scope
    summary = energy_summary(record)
    assert summary["device"] == "cpu"
    assert summary["energy_scope"].startswith(words)


def test_a_cpu_figure_from_another_meter_is_not_described_by_the_session_meter() -> None:
    session_meter = EstimateMeter(watts_per_core=10.0)  # the session's meter; the phase was metered elsewhere
    borrowed = Measurement(
        name="call",
        meter="codecarbon",
        kind="estimate",
        duration_s=2.0,
        devices=(DeviceEnergy("cpu", "cpu", 5.0, "estimate", "codecarbon"),),
    )
    info = session_meter.info().to_dict()
    record = Record(nodeid="t", backend="optimum", phases=[Phase("call", borrowed, samples=1)], meter=info)
    assert energy_summary(record)["energy_scope"] == "cpu energy of the whole machine, as codecarbon reports it"
