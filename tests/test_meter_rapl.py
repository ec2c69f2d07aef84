"""RAPL against a fake powercap tree laid out as Linux lays out a two-socket Intel machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_aienergyscore.meters import MeterUnavailable, create_meter, rapl
from pytest_aienergyscore.meters.rapl import RaplMeter, discover_zones

MAX_RANGE_UJ = 262_143_328_850  # what a Xeon package zone reports


def add_zone(root: Path, dirname: str, name: str, energy_uj: int = 0, max_range_uj: int = MAX_RANGE_UJ) -> Path:
    zone = root / dirname
    zone.mkdir()
    (zone / "name").write_text(name + "\n")
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_range_uj}\n")
    (zone / "enabled").write_text("1\n")
    return zone


def set_energy(zone: Path, energy_uj: int) -> None:
    (zone / "energy_uj").write_text(f"{energy_uj}\n")


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "intel-rapl").mkdir()  # the control type folder, no counter of its own
    return {
        "package-0": add_zone(tmp_path, "intel-rapl:0", "package-0", 10_000_000),
        "core": add_zone(tmp_path, "intel-rapl:0:0", "core", 4_000_000),
        "dram": add_zone(tmp_path, "intel-rapl:0:1", "dram", 2_000_000),
        "package-1": add_zone(tmp_path, "intel-rapl:1", "package-1", 30_000_000),
        "mmio": add_zone(tmp_path, "intel-rapl-mmio:0", "package-0", 10_000_000),
        "psys": add_zone(tmp_path, "intel-rapl:2", "psys", 90_000_000),
    }


def test_meters_each_package_and_dram_once(tmp_path: Path, tree: dict[str, Path]) -> None:
    meter = RaplMeter(root=tmp_path)
    assert meter.device_scopes() == {"package-0": "cpu", "package-1": "cpu", "dram-0": "ram"}
    assert {fact["file"] for fact in meter.device_facts()} == {
        str(tree["package-0"] / "energy_uj"),
        str(tree["package-1"] / "energy_uj"),
        str(tree["dram"] / "energy_uj"),
    }


def test_window_adds_packages_and_dram_but_not_sub_zones_mirror_or_psys(tmp_path: Path, tree: dict[str, Path]) -> None:
    meter = RaplMeter(root=tmp_path)
    meter.begin_window("w")
    set_energy(tree["package-0"], 10_000_000 + 2_000_000)
    set_energy(tree["mmio"], 10_000_000 + 2_000_000)  # the same package through MMIO
    set_energy(tree["core"], 4_000_000 + 1_500_000)  # inside package-0 already
    set_energy(tree["dram"], 2_000_000 + 500_000)
    set_energy(tree["package-1"], 30_000_000 + 3_000_000)
    set_energy(tree["psys"], 90_000_000 + 9_000_000)  # the whole SoC, overlaps everything
    m = meter.end_window("w")
    assert {d.device: d.joules for d in m.devices} == {
        "package-0": pytest.approx(2.0),
        "package-1": pytest.approx(3.0),
        "dram-0": pytest.approx(0.5),
    }
    assert m.joules() == pytest.approx(5.5)
    assert m.joules("cpu") == pytest.approx(5.0)
    assert m.joules("ram") == pytest.approx(0.5)
    assert m.scopes() == ("cpu", "ram")
    assert (m.meter, m.kind) == ("rapl", "measured")
    assert all((d.kind, d.meter) == ("measured", "rapl") for d in m.devices)
    assert m.valid


def test_mmio_zone_is_used_when_it_is_the_only_one(tmp_path: Path) -> None:
    add_zone(tmp_path, "intel-rapl-mmio:0", "package-0", 5)
    assert RaplMeter(root=tmp_path).device_scopes() == {"package-0": "cpu"}


def test_dram_of_each_socket_is_its_own_device(tmp_path: Path) -> None:
    add_zone(tmp_path, "intel-rapl:0", "package-0")
    add_zone(tmp_path, "intel-rapl:0:0", "dram")
    add_zone(tmp_path, "intel-rapl:1", "package-1")
    add_zone(tmp_path, "intel-rapl:1:0", "dram")
    assert RaplMeter(root=tmp_path).device_scopes() == {
        "package-0": "cpu",
        "package-1": "cpu",
        "dram-0": "ram",
        "dram-1": "ram",
    }


def test_wrap_around_uses_max_energy_range(tmp_path: Path) -> None:
    zone = add_zone(tmp_path, "intel-rapl:0", "package-0", 900_000, max_range_uj=1_000_000)
    meter = RaplMeter(root=tmp_path)
    meter.begin_window("wrap")
    set_energy(zone, 100_000)  # 0.1 J to the top, wrapped, 0.1 J more
    m = meter.end_window("wrap")
    assert m.joules() == pytest.approx(0.2, abs=2e-6)
    assert m.valid
    meter.begin_window("after")
    set_energy(zone, 400_000)
    assert meter.end_window("after").joules() == pytest.approx(0.3)


def test_counting_continues_across_several_wraps_between_windows(tmp_path: Path) -> None:
    zone = add_zone(tmp_path, "intel-rapl:0", "package-0", 0, max_range_uj=1_000_000)
    meter = RaplMeter(root=tmp_path)
    meter.begin_window("long")
    for raw in (600_000, 200_000, 800_000, 300_000):  # each read sees at most one wrap
        set_energy(zone, raw)
        meter.read()
    m = meter.end_window("long")
    assert m.joules() == pytest.approx(0.6 + 0.6 + 0.6 + 0.5, abs=1e-5)


def test_root_only_counters_say_so(tmp_path: Path, tree: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    # chmod 000 does not stop root, so the Linux >= 5.10 permission is played by the reader itself
    real_read = rapl._read_int

    def read_int(path: Path) -> int:
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return real_read(path)

    monkeypatch.setattr(rapl, "_read_int", read_int)
    with pytest.raises(MeterUnavailable, match="root only") as err:
        RaplMeter(root=tmp_path)
    assert str(tree["package-0"] / "energy_uj") in str(err.value)


def test_no_zones_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(MeterUnavailable, match="no RAPL zones"):
        RaplMeter(root=tmp_path)
    with pytest.raises(MeterUnavailable, match="no RAPL zones"):
        discover_zones(tmp_path / "missing")


def test_zones_without_package_or_dram_are_unavailable(tmp_path: Path) -> None:
    add_zone(tmp_path, "intel-rapl:0", "psys")
    add_zone(tmp_path, "intel-rapl:0:0", "core")
    with pytest.raises(MeterUnavailable, match="no package or dram zone"):
        RaplMeter(root=tmp_path)


def test_zone_folder_without_energy_file_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "intel-rapl:5").mkdir()  # a zone the driver exposes without a counter
    add_zone(tmp_path, "intel-rapl:0", "package-0")
    assert RaplMeter(root=tmp_path).device_scopes() == {"package-0": "cpu"}


def test_create_meter_rapl_raises_where_there_is_no_powercap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rapl, "_zone_dirs", lambda root: [])
    with pytest.raises(MeterUnavailable, match="no RAPL zones"):
        create_meter("rapl")
