"""NvmlMeter's logic against a fake of pynvml (tests/fake_pynvml.py); tests/test_gpu.py runs the real one."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import psutil
import pytest

from pytest_aienergyscore.config.settings import Settings
from pytest_aienergyscore.meters import MeterUnavailable, create_meter, rapl
from pytest_aienergyscore.meters import base as meter_base
from pytest_aienergyscore.meters import nvml as nvml_module
from pytest_aienergyscore.meters.gpu_state import IDLE_SECONDS
from pytest_aienergyscore.meters.nvml import WRAP_MJ, NvmlMeter, load_pynvml, visible_nvml_indices
from pytest_aienergyscore.records.record import Phase, Record
from pytest_aienergyscore.report.files import energy_summary
from pytest_aienergyscore.rules.comparability import not_comparable_reasons
from pytest_aienergyscore.rules.gpu_survey import UNKNOWN, survey_reasons
from pytest_aienergyscore.session.energy_session import EnergySession
from tests.support import fake_pynvml
from tests.support.fake_pynvml import FakeGpu, FakeProcess, make_gpus, make_pynvml


@pytest.fixture(autouse=True)
def no_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide torch: once a GPU test has started CUDA in this process, the meter would map ordinals through it."""
    monkeypatch.setitem(sys.modules, "torch", None)


@pytest.fixture(autouse=True)
def no_pynvml(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real pynvml must not be reached from these tests, GPU or not."""
    monkeypatch.setitem(sys.modules, "pynvml", None)


def started(gpus: list[FakeGpu], **kwargs: Any) -> ModuleType:
    nvml = make_pynvml(gpus, **kwargs)
    nvml.nvmlInit()
    return nvml


def meter_for(gpus: list[FakeGpu], ordinals: tuple[int, ...] = (0,), env: dict[str, str] | None = None) -> NvmlMeter:
    return NvmlMeter(ordinals, nvml=started(gpus), env={} if env is None else env)


def test_counter_steps_become_joules_per_device() -> None:
    gpus = make_gpus(2)
    meter = meter_for(gpus, (0, 1))
    meter.begin_window("forward")
    gpus[0].energy_mj += 1_500
    gpus[1].energy_mj += 250
    m = meter.end_window("forward")
    assert {d.device: d.joules for d in m.devices} == {"cuda:0": pytest.approx(1.5), "cuda:1": pytest.approx(0.25)}
    assert m.joules("gpu") == pytest.approx(1.75)
    assert (m.meter, m.kind, m.counter_period_s) == ("nvml", "measured", 0.1)
    assert all((d.scope, d.kind, d.meter) == ("gpu", "measured", "nvml") for d in m.devices)
    assert m.valid


def test_counter_driven_by_the_clock_gives_its_power() -> None:
    gpu = FakeGpu(uuid="GPU-aaaa0000-0000-0000-0000-000000000000", energy_mj=lambda: int(time.perf_counter() * 200_000))
    meter = meter_for([gpu])  # a GPU drawing a steady 200 W
    meter.begin_window("w")
    time.sleep(0.2)
    m = meter.end_window("w")
    assert m.joules() == pytest.approx(200.0 * m.duration_s, rel=0.02)


def test_only_the_chosen_ordinals_are_metered() -> None:
    gpus = make_gpus(4)
    meter = meter_for(gpus, (1, 3))
    assert meter.device_scopes() == {"cuda:1": "gpu", "cuda:3": "gpu"}
    meter.begin_window("w")
    for gpu in gpus:
        gpu.energy_mj += 10_000
    m = meter.end_window("w")
    assert m.joules() == pytest.approx(20.0)
    assert gpus[0].energy_queries == gpus[2].energy_queries == 0
    assert gpus[1].energy_queries > 0 and gpus[3].energy_queries > 0
    assert [fact["uuid"] for fact in meter.device_facts()] == [gpus[1].uuid, gpus[3].uuid]


def test_cuda_visible_devices_reorders_ordinals() -> None:
    gpus = make_gpus(4)
    meter = meter_for(gpus, (0, 1), env={"CUDA_VISIBLE_DEVICES": "2,0"})
    meter.begin_window("w")
    gpus[2].energy_mj += 3_000
    gpus[0].energy_mj += 1_000
    gpus[1].energy_mj += 99_000  # invisible to this process
    m = meter.end_window("w")
    assert {d.device: d.joules for d in m.devices} == {"cuda:0": pytest.approx(3.0), "cuda:1": pytest.approx(1.0)}
    assert {f["device"]: f["uuid"] for f in meter.device_facts()} == {"cuda:0": gpus[2].uuid, "cuda:1": gpus[0].uuid}


@pytest.mark.parametrize(
    ("visible", "expected"),
    [
        (None, [0, 1, 2, 3]),
        ("", []),
        ("3", [3]),
        ("2,0", [2, 0]),
        (" 1 , 3 ", [1, 3]),
        ("uuid:2,uuid:0", [2, 0]),  # full UUIDs, as nvidia-smi -L prints them
        ("prefix:1,0", [1, 0]),  # enough leading characters of the UUID to be unique
        ("1,bogus,0", [1]),  # CUDA stops at the first entry it cannot resolve
        ("0,9,1", [0]),  # an index past the last GPU is such an entry
        ("0,2,-1,1", [0, 2]),  # the example in CUDA's documentation
        ("GPU-,1", []),  # a prefix that fits every GPU resolves none
    ],
)
def test_visible_nvml_indices_follows_cuda_rules(visible: str | None, expected: list[int]) -> None:
    gpus = make_gpus(4)
    nvml = started(gpus)
    if visible is not None:
        visible = visible.replace("uuid:2", gpus[2].uuid).replace("uuid:0", gpus[0].uuid)
        visible = visible.replace("prefix:1", gpus[1].uuid[:8])
    env = {} if visible is None else {"CUDA_VISIBLE_DEVICES": visible}
    assert visible_nvml_indices(nvml, env) == expected


def test_out_of_range_index_is_not_read_as_a_uuid_prefix() -> None:
    gpus = make_gpus(4)
    gpus[3].uuid = "GPU-7f3c2a10-1111-2222-3333-000000000003"  # the only UUID whose hex starts with 7
    assert visible_nvml_indices(started(gpus), {"CUDA_VISIBLE_DEVICES": "0,7"}) == [0]


def test_an_ordinal_beyond_the_visible_gpus_names_the_option() -> None:
    with pytest.raises(MeterUnavailable, match="--energy-gpus 1") as err:
        meter_for(make_gpus(4), (0, 1), env={"CUDA_VISIBLE_DEVICES": "3"})
    assert "sees 1 GPU(s)" in str(err.value)
    with pytest.raises(MeterUnavailable, match="--energy-gpus 2"):
        meter_for(make_gpus(2), (2,))


def test_a_64_bit_wrap_keeps_counting() -> None:
    [gpu] = gpus = make_gpus(1)
    gpu.energy_mj = WRAP_MJ - 3_000_000
    meter = meter_for(gpus)
    meter.begin_window("wrap")
    gpu.energy_mj = 2_000_000
    m = meter.end_window("wrap")
    assert m.joules() == pytest.approx(5_000.0)
    assert m.valid
    assert not any("reset" in w for w in m.warnings)


def test_a_short_window_across_the_64_bit_wrap_is_exact() -> None:
    [gpu] = gpus = make_gpus(1)
    gpu.energy_mj = WRAP_MJ - 1_000
    meter = meter_for(gpus)
    meter.begin_window("wrap")
    gpu.energy_mj = 500
    assert meter.end_window("wrap").joules() == pytest.approx(1.5)


def test_a_driver_reset_invalidates_the_window_across_it() -> None:
    [gpu] = gpus = make_gpus(1)
    gpu.energy_mj = 5_000_000
    meter = meter_for(gpus)
    meter.begin_window("across")
    gpu.energy_mj = 200  # the driver reloaded: the counter started again from zero
    m = meter.end_window("across")
    assert not m.valid
    assert m.joules() >= 0.0
    assert any("reset" in w for w in m.warnings)
    meter.begin_window("after")
    gpu.energy_mj = 1_200
    after = meter.end_window("after")
    assert after.valid
    assert after.joules() == pytest.approx(1.0)


def test_an_unsupported_counter_falls_back_to_power_sampling() -> None:
    gpus = [FakeGpu(uuid="GPU-bbbb0000-0000-0000-0000-000000000000", name="Tesla P100", energy_mj=None)]
    gpus[0].power_mw = 50_000
    meter = meter_for(gpus)
    try:
        assert meter.name == "nvml-power"
        meter.begin_window("w")
        time.sleep(0.3)
        m = meter.end_window("w")
        assert m.meter == "nvml-power"
        assert all(d.meter == "nvml-power" for d in m.devices)
        assert m.joules() == pytest.approx(50.0 * m.duration_s, rel=0.2)
        assert gpus[0].power_queries >= 3  # sampled in between, not only at the edges
        assert meter.device_facts()[0]["counter"] == "power sampling"
        assert meter.info().name == "nvml-power"
    finally:
        meter.close()
    assert meter._sampler is None


def test_power_sampling_stops_on_close() -> None:
    gpus = [FakeGpu(uuid="GPU-bbbb0000-0000-0000-0000-000000000000", energy_mj=None)]
    meter = meter_for(gpus)
    sampler = meter._sampler
    assert sampler is not None and sampler._thread.is_alive()
    meter.close()
    assert not sampler._thread.is_alive()
    queries = gpus[0].power_queries
    time.sleep(0.1)
    assert gpus[0].power_queries == queries


def test_one_gpu_without_counter_puts_all_on_power_sampling() -> None:
    gpus = make_gpus(2)
    gpus[1].energy_mj = None
    meter = meter_for(gpus, (0, 1))
    try:
        assert meter.name == "nvml-power"
        assert meter.device_scopes() == {"cuda:0": "gpu", "cuda:1": "gpu"}
    finally:
        meter.close()


def test_device_facts() -> None:
    gpus = make_gpus(2)
    gpus[1].name, gpus[1].power_limit_mw = "NVIDIA H200", 650_000
    meter = NvmlMeter((1,), nvml=started(gpus, driver="560.35.03"), env={})
    assert meter.device_facts() == (
        {
            "device": "cuda:1",
            "scope": "gpu",
            "name": "NVIDIA H200",
            "uuid": gpus[1].uuid,
            "power_limit_w": 650.0,
            "driver": "560.35.03",
            "counter": "total energy (mJ)",
        },
    )


def test_device_facts_decode_bytes_from_old_pynvml() -> None:
    gpus = make_gpus(1)
    meter = NvmlMeter((0,), nvml=started(gpus, strings_as_bytes=True), env={})
    [fact] = meter.device_facts()
    assert (fact["name"], fact["uuid"], fact["driver"]) == (gpus[0].name, gpus[0].uuid, "550.54.15")


def test_torch_uuid_maps_ordinals_and_reads_are_synchronised(monkeypatch: pytest.MonkeyPatch) -> None:
    gpus = make_gpus(3)
    synced: list[int] = []

    def properties(ordinal: int) -> SimpleNamespace:
        return SimpleNamespace(uuid=gpus[[2, 0][ordinal]].uuid.removeprefix("GPU-"))  # torch omits the prefix

    cuda = SimpleNamespace(is_initialized=lambda: True, get_device_properties=properties, synchronize=synced.append)
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda))
    meter = meter_for(gpus, (1, 0))  # no CUDA_VISIBLE_DEVICES: torch's view wins
    assert {f["device"]: f["uuid"] for f in meter.device_facts()} == {"cuda:1": gpus[0].uuid, "cuda:0": gpus[2].uuid}
    meter.begin_window("w")
    assert synced == [1, 0]
    meter.end_window("w")
    assert synced == [1, 0, 1, 0]


def test_load_pynvml_without_the_package_gives_the_pip_hint() -> None:
    with pytest.raises(MeterUnavailable, match=r"pip install nvidia-ml-py"):
        load_pynvml()
    with pytest.raises(MeterUnavailable, match=r"pynvml is not installed"):
        create_meter("nvml")


def test_load_pynvml_without_a_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", make_pynvml([], init_error=9))
    with pytest.raises(MeterUnavailable, match="NVML could not start: Driver Not Loaded"):
        load_pynvml()


def test_load_pynvml_initialises_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = make_pynvml(make_gpus(1))
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    assert load_pynvml() is nvml
    assert nvml.nvmlDeviceGetCount() == 1  # would raise Uninitialized had nvmlInit not been called


def test_auto_falls_back_to_the_estimate_saying_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rapl, "_zone_dirs", lambda root: [])
    meter = create_meter("auto", cpu_watts=12.0)
    assert (meter.name, meter.kind) == ("estimate", "estimate")
    assert meter.reason.startswith("auto: ")
    assert "nvml: pynvml is not installed" in meter.reason
    assert "rapl: no RAPL zones" in meter.reason
    assert "falling back to the CPU-time estimate" in meter.reason


def test_auto_takes_nvml_when_it_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setitem(sys.modules, "pynvml", make_pynvml(make_gpus(2)))
    meter = create_meter("auto", gpus=(1,))
    try:
        assert meter.name == "nvml"
        assert meter.device_scopes() == {"cuda:1": "gpu"}
        assert meter.reason == "auto: nvml works"
    finally:
        meter.close()


def test_auto_takes_rapl_when_nvml_is_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    zone = tmp_path / "intel-rapl:0"
    zone.mkdir()
    for name, value in (("name", "package-0"), ("energy_uj", "1"), ("max_energy_range_uj", "1000")):
        (zone / name).write_text(value + "\n")
    real_zone_dirs = rapl._zone_dirs
    monkeypatch.setattr(rapl, "_zone_dirs", lambda root: real_zone_dirs(tmp_path))
    meter = create_meter("auto")
    assert meter.name == "rapl"
    assert "nvml: pynvml is not installed" in meter.reason
    assert meter.reason.endswith("rapl works")


# -- a counter that stands still -------------------------------------------------------------------------------------


class FakeClock:
    """Stands in for the meter's clock and for time.sleep, so that seconds pass without being waited for."""

    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> tuple[float, float]:
        return self.t, 1_700_000_000.0 + self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(nvml_module, "now", fake.now)
    monkeypatch.setattr(meter_base.time, "sleep", fake.sleep)
    return fake


def test_a_counter_that_stands_still_for_a_second_makes_the_window_invalid(clock: FakeClock) -> None:
    gpus = make_gpus(2)
    meter = meter_for(gpus, (0, 1))
    meter.begin_window("stuck")
    clock.sleep(1.0)
    gpus[1].energy_mj += 70_000  # cuda:1 drew 70 W, cuda:0's counter never moved
    m = meter.end_window("stuck")
    assert not m.valid
    [warning] = [w for w in m.warnings if "did not move" in w]
    assert warning.startswith("cuda:0: the NVML energy counter did not move in 1.00 s")


def test_a_still_counter_in_a_window_under_a_second_is_flagged_short_but_stays_valid(clock: FakeClock) -> None:
    meter = meter_for(make_gpus(1))
    meter.begin_window("blink")
    clock.sleep(0.5)  # five counter updates: a still counter is plausible, the window is untrustworthy anyway
    m = meter.end_window("blink")
    assert m.valid
    assert m.confidence == "untrustworthy"
    assert not any("did not move" in w for w in m.warnings)


def test_a_moving_counter_keeps_a_long_window_valid(clock: FakeClock) -> None:
    [gpu] = gpus = make_gpus(1)
    meter = meter_for(gpus)
    meter.begin_window("w")
    clock.sleep(6.0)
    gpu.energy_mj += 1
    assert meter.end_window("w").valid


def test_nvml_figures_say_they_are_whole_gpu_counters_of_the_metered_gpus() -> None:
    meter = meter_for(make_gpus(3), (0, 2))
    details = meter.info().details
    assert details["cpu_scope"] is None
    assert details["energy_scope"].startswith("GPU energy of cuda:0, cuda:2 (NVML, whole-GPU counters")


# -- the survey before the first benchmark: other processes, MIG, power limits, idle power ---------------------------


NOT_HERE = "not a process of this PID namespace (a container?): its owner cannot be told"


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A real child process: its GPU use would be the benchmark's own (a backend's worker)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield child
    child.kill()
    child.wait()


def test_survey_lists_other_compute_processes_but_not_this_process_or_its_children(
    clock: FakeClock, sleeper: subprocess.Popen[bytes]
) -> None:
    [gpu] = gpus = make_gpus(1)
    gpu.energy_mj = lambda: int(clock.t * 75_000)
    gpu.processes = [
        FakeProcess(os.getpid(), 512 << 20),
        FakeProcess(sleeper.pid, 256 << 20),
        FakeProcess(4_000_001, 2 << 30, name="python3"),  # NVML names it: outside this PID namespace, say
        FakeProcess(1, None),  # NVML cannot tell its memory nor its name: the OS names it
        FakeProcess(4_000_002, graphics=True, name="Xorg"),  # drawing, not computing
    ]
    [state] = meter_for(gpus).survey_gpus(3.0)
    assert state["other_processes"] == [
        {"pid": 4_000_001, "name": "python3", "used_memory_mib": 2048.0, "note": NOT_HERE},
        {"pid": 1, "name": psutil.Process(1).name(), "used_memory_mib": None},
    ]
    [reason] = survey_reasons([state])
    assert reason == (
        f"cuda:0 was shared: other compute processes on it before the first benchmark: "
        f"pid 4000001 (python3, 2048 MiB, {NOT_HERE}), pid 1 ({psutil.Process(1).name()})"
    )


def test_survey_records_identity_mig_power_limits_and_idle_power(clock: FakeClock) -> None:
    [gpu] = gpus = make_gpus(1)
    gpu.energy_mj = lambda: int(clock.t * 72_500)  # 72.5 W at rest
    gpu.power_limit_mw, gpu.default_power_limit_mw, gpu.mig_mode = 450_000, 700_000, 1
    meter = meter_for(gpus)
    [state] = meter.survey_gpus(3.0)
    assert state == {
        "device": "cuda:0",
        "uuid": gpu.uuid,
        "name": "NVIDIA H100 80GB HBM3",
        "other_processes": [],
        "mig_mode": "enabled",
        "power_limit_w": 450.0,
        "default_power_limit_w": 700.0,
        "idle_seconds": 3.0,
        "idle_power_w": pytest.approx(72.5, abs=0.01),
    }
    assert meter.open_windows() == ()


def test_survey_idle_power_really_waits_and_comes_from_the_counter() -> None:
    [gpu] = gpus = make_gpus(1)
    gpu.energy_mj = lambda: int(time.perf_counter() * 64_000)  # a GPU at 64 W, on the real clock
    start = time.perf_counter()
    [state] = meter_for(gpus).survey_gpus(0.2)
    assert time.perf_counter() - start >= 0.2
    assert state["idle_power_w"] == pytest.approx(64.0, rel=0.05)


def test_unsupported_queries_are_recorded_as_unknown_with_why_and_are_no_reason(clock: FakeClock) -> None:
    [gpu] = gpus = make_gpus(1)
    gpu.energy_mj = lambda: int(clock.t * 50_000)
    gpu.processes_error, gpu.mig_mode, gpu.default_power_limit_mw = fake_pynvml.NVML_ERROR_NOT_SUPPORTED, None, None
    gpu.power_limit_mw = 300_000  # lower than nothing known: not a reason
    [state] = meter_for(gpus).survey_gpus(3.0)
    assert (state["other_processes"], state["mig_mode"], state["default_power_limit_w"]) == (UNKNOWN,) * 3
    assert state["unknown_because"] == {
        "other_processes": "NVML cannot list compute processes: Not Supported",
        "mig_mode": "NVML: Not Supported",
        "default_power_limit_w": "NVML: Not Supported",
    }
    assert state["power_limit_w"] == 300.0
    assert survey_reasons([state]) == []


def test_idle_power_is_unknown_when_the_counter_stood_still_through_the_idle_window(clock: FakeClock) -> None:
    meter = meter_for(make_gpus(1))  # its counter never moves
    [state] = meter.survey_gpus(3.0)
    assert state["idle_power_w"] == UNKNOWN
    assert "did not move in 3.00 s" in state["unknown_because"]["idle_power_w"]


def test_a_pynvml_without_the_newer_calls_leaves_those_facts_unknown(clock: FakeClock) -> None:
    [gpu] = gpus = make_gpus(1)
    gpu.energy_mj = lambda: int(clock.t * 60_000)
    nvml = started(gpus)
    del nvml.nvmlDeviceGetMigMode
    [state] = NvmlMeter((0,), nvml=nvml, env={}).survey_gpus(3.0)
    assert state["mig_mode"] == UNKNOWN
    assert state["unknown_because"] == {"mig_mode": "pynvml has no nvmlDeviceGetMigMode"}


def surveyed(**changes: Any) -> dict[str, Any]:
    state: dict[str, Any] = {
        "device": "cuda:0",
        "other_processes": [],
        "mig_mode": "disabled",
        "power_limit_w": 700.0,
        "default_power_limit_w": 700.0,
        "idle_power_w": 70.0,
    }
    return {**state, **changes}


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        (
            {"other_processes": [{"pid": 77, "name": "python3", "used_memory_mib": 2048.0}]},
            "cuda:0 was shared: other compute processes on it before the first benchmark: pid 77 (python3, 2048 MiB)",
        ),
        (
            {"other_processes": [{"pid": 78, "name": None, "used_memory_mib": None}]},
            "cuda:0 was shared: other compute processes on it before the first benchmark: pid 78 (name unknown)",
        ),
        ({"mig_mode": "enabled"}, "cuda:0 is in MIG mode: the leaderboard's GPUs are whole GPUs"),
        ({"power_limit_w": 500.0}, "cuda:0 power limit is 500 W, below its default of 700 W"),
    ],
)
def test_a_shared_mig_or_capped_gpu_is_a_reason(changes: dict[str, Any], reason: str) -> None:
    assert survey_reasons([surveyed(), surveyed(device="cuda:1", **changes)]) == [reason.replace("cuda:0", "cuda:1")]


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"other_processes": UNKNOWN, "mig_mode": UNKNOWN, "default_power_limit_w": UNKNOWN},
        {"power_limit_w": UNKNOWN},
        {"power_limit_w": 699.5},  # the default written back, rounded
        {"power_limit_w": 750.0},  # raised: the GPU is not held back
        {"mig_mode": "disabled", "idle_power_w": UNKNOWN},
        {"other_processes": [{"pid": 91, "name": "vllm", "used_memory_mib": 70_000.0}]},  # the workload itself
    ],
)
def test_a_whole_uncapped_gpu_or_unknown_facts_are_no_reason(changes: dict[str, Any]) -> None:
    assert survey_reasons([surveyed(**changes)], workload_pids={91}) == []


# -- the session takes the survey once and every record carries it ---------------------------------------------------


def gpu_record(meter: NvmlMeter, clock: FakeClock, gpu: FakeGpu, seconds: float, state: list[dict[str, Any]]) -> Record:
    meter.begin_window("forward")
    clock.sleep(seconds)
    gpu.energy_mj = int(gpu.energy_mj() if callable(gpu.energy_mj) else gpu.energy_mj) + int(seconds * 300_000)
    measurement = meter.end_window("forward")
    return Record(
        nodeid="test_x",
        backend="custom",
        queries=1000,
        phases=[Phase("forward", measurement, samples=1000)],
        meter=meter.info().to_dict(),
        environment={"gpus": list(meter.device_facts()), "gpu_state": state},
    )


def test_a_shared_gpu_makes_the_record_not_comparable_with_the_reason(clock: FakeClock) -> None:
    [gpu] = gpus = make_gpus(1)
    gpu.energy_mj = 5_000_000
    meter = meter_for(gpus)
    clean = gpu_record(meter, clock, gpu, 10.0, [surveyed()])
    shared = gpu_record(
        meter, clock, gpu, 10.0, [surveyed(other_processes=[{"pid": 5, "name": "x", "used_memory_mib": 1.0}])]
    )
    added = set(not_comparable_reasons(shared)) - set(not_comparable_reasons(clean))
    assert added == {"cuda:0 was shared: other compute processes on it before the first benchmark: pid 5 (x, 1 MiB)"}
    summary = energy_summary(shared)
    assert summary["comparable"] is False
    assert summary["gpu_idle_power_w"] == {"cuda:0": 70.0}
    assert summary["energy_scope"] == "gpu energy only"


def test_a_gpu_window_under_a_second_is_not_comparable(clock: FakeClock) -> None:
    [gpu] = gpus = make_gpus(1)
    meter = meter_for(gpus)
    long = gpu_record(meter, clock, gpu, 10.0, [surveyed()])
    short = gpu_record(meter, clock, gpu, 0.5, [surveyed()])
    added = set(not_comparable_reasons(short)) - set(not_comparable_reasons(long))
    assert added == {"GPU window of forward is too short to trust (under ten counter updates)"}


def test_the_session_surveys_the_gpus_once_before_metering_and_every_record_carries_it(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    gpus = make_gpus(2)
    for gpu in gpus:
        gpu.energy_mj = lambda: int(clock.t * 90_000)
    gpus[1].processes = [FakeProcess(4_000_123, name="other")]
    monkeypatch.setitem(sys.modules, "pynvml", make_pynvml(gpus))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    session = EnergySession(Settings(meter="nvml", gpus=(1,), output_dir=tmp_path))
    assert clock.t == 1000.0
    meter = session.meter
    assert clock.t == 1000.0 + IDLE_SECONDS  # the idle window slept, before any benchmark window
    assert session.meter is meter and clock.t == 1000.0 + IDLE_SECONDS  # once per session
    for name in ("a", "b"):
        meter.begin_window(name)
        clock.sleep(6.0)
        session.add(Record(nodeid=name, backend="custom", phases=[Phase("call", meter.end_window(name), samples=1)]))
    states = [record.environment["gpu_state"] for record in session.records]
    assert states[0] == states[1]
    [state] = states[0]
    assert (state["device"], state["uuid"], state["idle_power_w"]) == ("cuda:1", gpus[1].uuid, pytest.approx(90.0))
    assert state["other_processes"] == [
        {"pid": 4_000_123, "name": "other", "used_memory_mib": 1024.0, "note": NOT_HERE}
    ]
    assert any("cuda:1 was shared" in r for r in not_comparable_reasons(session.records[0]))
    session.finish()


def test_a_session_on_the_cpu_records_an_empty_gpu_state(tmp_path: Path) -> None:
    session = EnergySession(Settings(meter="estimate", output_dir=tmp_path))
    meter = session.meter
    meter.begin_window("w")
    session.add(Record(nodeid="t", backend="custom", phases=[Phase("call", meter.end_window("w"), samples=1)]))
    assert session.records[0].environment["gpu_state"] == []
    session.finish()


def test_a_gpu_that_stops_answering_during_the_idle_window_leaves_idle_power_unknown(clock: FakeClock) -> None:
    [gpu] = gpus = make_gpus(1)
    meter = meter_for(gpus)
    answers = iter([1_000])  # the read at the idle window's start; then the GPU falls off the bus

    def energy() -> int:
        try:
            return next(answers)
        except StopIteration:
            raise fake_pynvml.NVMLError(15) from None  # NVML_ERROR_GPU_IS_LOST

    gpu.energy_mj = energy
    [state] = meter.survey_gpus(3.0)
    assert state["idle_power_w"] == UNKNOWN
    assert state["unknown_because"]["idle_power_w"] == "NVML: Unknown Error 15"
    assert meter.open_windows() == ()


def test_a_local_servers_own_processes_on_the_gpu_are_the_workload_not_another_process(clock: FakeClock) -> None:
    [gpu] = gpus = make_gpus(1)
    meter = meter_for(gpus)
    server = [{"pid": 91, "name": "python3", "used_memory_mib": 70_000.0}]
    alone = gpu_record(meter, clock, gpu, 10.0, [surveyed(other_processes=server)])
    served = gpu_record(meter, clock, gpu, 10.0, [surveyed(other_processes=server)])
    served.metadata["model_facts"] = {"server_local": True, "server_pids": [91, 92]}
    assert any("cuda:0 was shared" in r for r in not_comparable_reasons(alone))
    assert not any("cuda:0 was shared" in r for r in not_comparable_reasons(served))
