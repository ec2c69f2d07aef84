"""RAPL against fake powercap trees laid out as Linux lays out two-socket Intel, multi-die Intel and AMD machines."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pytest_aienergyscore.meters import MeterUnavailable, create_meter, rapl
from pytest_aienergyscore.meters.rapl import MAX_POLL_S, MIN_POLL_S, RaplMeter, discover_zones, poll_interval_s
from pytest_aienergyscore.records.record import Phase, Record
from pytest_aienergyscore.report.files import energy_summary

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


# -- wraps in long windows: the watcher reads while a window is open ---------------------------------------------------

WATCHED_RANGE_UJ = 100_000_000  # 100 J: wraps every 0.2 s at 500 W, so the watcher reads every 50 ms


def wait_for_background_reads(meter: RaplMeter, count: int = 2, timeout_s: float = 10.0) -> None:
    """Until the watcher has read ``count`` more times: then the value just written has certainly been seen."""
    target = meter.background_reads + count
    deadline = time.monotonic() + timeout_s
    while meter.background_reads < target:
        assert time.monotonic() < deadline, "the wrap watcher stopped reading"
        time.sleep(0.005)


def test_a_long_window_counts_every_wrap_of_the_counter(tmp_path: Path) -> None:
    zone = add_zone(tmp_path, "intel-rapl:0", "package-0", 0, max_range_uj=WATCHED_RANGE_UJ)
    meter = RaplMeter(root=tmp_path)
    assert meter.poll_s == pytest.approx(0.05)
    meter.begin_window("long")
    counted_uj = 0
    for _ in range(7):  # 7 x 60 J = 420 J: the counter wraps four times, the end read alone would see 16 J
        counted_uj += 60_000_000
        set_energy(zone, counted_uj % (WATCHED_RANGE_UJ + 1))
        wait_for_background_reads(meter)
    m = meter.end_window("long")
    assert m.joules() == pytest.approx(420.0, abs=1e-5)
    assert m.valid
    assert meter._zones[0].wraps == 4


def test_the_watcher_runs_exactly_while_a_window_is_open(tmp_path: Path) -> None:
    add_zone(tmp_path, "intel-rapl:0", "package-0", 0, max_range_uj=WATCHED_RANGE_UJ)
    meter = RaplMeter(root=tmp_path)
    assert not meter.watching()
    meter.begin_window("outer")
    watcher = meter._watcher
    assert watcher is not None and watcher._thread.is_alive()
    meter.begin_window("inner")
    assert meter._watcher is watcher  # one watcher for all open windows
    meter.end_window("inner")
    assert meter.watching()
    wait_for_background_reads(meter)
    meter.end_window("outer")
    assert not meter.watching() and not watcher._thread.is_alive()
    meter.begin_window("raised")
    watcher = meter._watcher
    meter.cancel_window("raised")
    assert not meter.watching() and watcher is not None and not watcher._thread.is_alive()
    meter.begin_window("left open")
    watcher = meter._watcher
    meter.close()
    assert watcher is not None and not watcher._thread.is_alive()


@pytest.mark.parametrize(
    ("max_range_uj", "interval_s"),
    [
        (WATCHED_RANGE_UJ, 0.05),  # a quarter of 100 J / 500 W
        (MAX_RANGE_UJ, MAX_POLL_S),  # a Xeon: 131 s, capped
        (65_532_610_987, MAX_POLL_S),  # an AMD package: 33 s, capped
        (1_000_000, MIN_POLL_S),  # 0.5 ms would spin a core
    ],
)
def test_the_watch_interval_is_a_quarter_of_the_wrap_period_at_the_power_bound(
    max_range_uj: int, interval_s: float
) -> None:
    assert poll_interval_s(max_range_uj) == pytest.approx(interval_s)


def test_the_shortest_range_sets_the_interval_and_facts_say_it(tmp_path: Path) -> None:
    add_zone(tmp_path, "intel-rapl:0", "package-0")
    add_zone(tmp_path, "intel-rapl:0:0", "dram", max_range_uj=WATCHED_RANGE_UJ)
    meter = RaplMeter(root=tmp_path)
    assert meter.poll_s == pytest.approx(0.05)
    assert [fact["wrap_watch_interval_s"] for fact in meter.device_facts()] == [pytest.approx(0.05)] * 2


# -- die zones: each physical package counted once ---------------------------------------------------------------------


def test_die_zones_that_mirror_their_package_are_counted_once(tmp_path: Path) -> None:
    # an AMD kernel with die topology: every die zone reads the one package counter
    zones = [
        add_zone(tmp_path, "intel-rapl:0", "package-0-die-0", 7_000_000),
        add_zone(tmp_path, "intel-rapl:1", "package-0-die-1", 7_000_000),
        add_zone(tmp_path, "intel-rapl:2", "package-0-die-2", 7_000_000),
        add_zone(tmp_path, "intel-rapl:3", "package-1-die-0", 9_000_000),
        add_zone(tmp_path, "intel-rapl:4", "package-1-die-1", 9_000_000),
    ]
    add_zone(tmp_path, "intel-rapl:0:0", "core", 1_000_000)
    meter = RaplMeter(root=tmp_path)
    assert meter.device_scopes() == {"package-0": "cpu", "package-1": "cpu"}
    assert {f["device"]: f["note"] for f in meter.device_facts()} == {
        "package-0": "3 die zones read one package counter: counted once",
        "package-1": "2 die zones read one package counter: counted once",
    }
    meter.begin_window("w")
    for zone in zones[:3]:
        set_energy(zone, 7_000_000 + 2_000_000)
    for zone in zones[3:]:
        set_energy(zone, 9_000_000 + 1_000_000)
    m = meter.end_window("w")
    assert m.joules("cpu") == pytest.approx(3.0)


def test_the_package_zone_wins_over_its_die_zones(tmp_path: Path) -> None:
    add_zone(tmp_path, "intel-rapl:0", "package-0", 1_000)
    add_zone(tmp_path, "intel-rapl:1", "package-0-die-1", 1_000)
    add_zone(tmp_path, "intel-rapl:1:0", "dram", 5)  # the dram of a zone that is not metered
    add_zone(tmp_path, "intel-rapl:0:0", "dram", 5)
    meter = RaplMeter(root=tmp_path)
    assert meter.device_scopes() == {"package-0": "cpu", "dram-0": "ram"}
    assert {f["file"] for f in meter.device_facts()} == {
        str(tmp_path / "intel-rapl:0" / "energy_uj"),
        str(tmp_path / "intel-rapl:0:0" / "energy_uj"),
    }


def test_dies_with_their_own_counters_are_each_counted(tmp_path: Path) -> None:
    # an Intel multi-die Xeon: one real counter per die, and a DRAM zone under each
    die0 = add_zone(tmp_path, "intel-rapl:0", "package-0-die-0", 1_000_000)
    die1 = add_zone(tmp_path, "intel-rapl:1", "package-0-die-1", 3_500_000)
    add_zone(tmp_path, "intel-rapl:0:0", "dram", 10)
    add_zone(tmp_path, "intel-rapl:1:0", "dram", 20)
    meter = RaplMeter(root=tmp_path)
    assert meter.device_scopes() == {
        "package-0-die-0": "cpu",
        "package-0-die-1": "cpu",
        "dram-0": "ram",
        "dram-1": "ram",
    }
    meter.begin_window("w")
    set_energy(die0, 1_000_000 + 2_000_000)
    set_energy(die1, 3_500_000 + 4_000_000)
    assert meter.end_window("w").joules("cpu") == pytest.approx(6.0)


def test_a_mirror_read_across_a_counter_update_is_still_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    add_zone(tmp_path, "intel-rapl:0", "package-0-die-0", 500)
    add_zone(tmp_path, "intel-rapl:1", "package-0-die-1", 500)
    real_read = rapl._read_int
    reads = {"n": 0}

    def read_int(path: Path) -> int:  # the counter ticks between the first two reads, then holds
        reads["n"] += 1
        return real_read(path) + (1 if reads["n"] == 2 else 0)

    monkeypatch.setattr(rapl, "_read_int", read_int)
    assert RaplMeter(root=tmp_path).device_scopes() == {"package-0": "cpu"}


# -- what the figures cover -------------------------------------------------------------------------------------------


def test_rapl_figures_are_described_as_the_whole_machine(tmp_path: Path, tree: dict[str, Path]) -> None:
    meter = RaplMeter(root=tmp_path)
    meter.begin_window("w")
    set_energy(tree["package-0"], 10_000_000 + 2_000_000)
    record = Record(
        nodeid="t",
        backend="custom",
        phases=[Phase("call", meter.end_window("w"), samples=1)],
        meter=meter.info().to_dict(),
    )
    assert record.meter["details"]["cpu_scope"] == "machine"
    scope = energy_summary(record)["energy_scope"]
    assert scope == "CPU package and DRAM energy of the whole machine (RAPL): every process's, not only the benchmark's"
