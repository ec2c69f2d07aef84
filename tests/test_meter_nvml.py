"""NvmlMeter's logic against a fake of pynvml (tests/fake_pynvml.py); tests/test_gpu.py runs the real one."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from pytest_aienergyscore.meters import MeterUnavailable, create_meter, rapl
from pytest_aienergyscore.meters.nvml import WRAP_MJ, NvmlMeter, load_pynvml, visible_nvml_indices

from .fake_pynvml import FakeGpu, make_gpus, make_pynvml


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
