"""CPU package and DRAM energy from Linux powercap (RAPL) counters under ``/sys/class/powercap``.

Why the care:
- The counters wrap at ``max_energy_range_uj`` (about 65 kJ on AMD: four minutes at 280 W). Two reads see at most
  one wrap, so while any window is open a background thread reads every zone often enough that no wrap is missed
  (a quarter of the shortest wrap period at :data:`POWER_BOUND_W`, at most :data:`MAX_POLL_S`). The thread and the
  window edges share one running total per zone, so a wrap is counted once whoever sees it.
- The same package can appear several times: the ``intel-rapl-mmio`` mirror, and on multi-die CPUs die zones
  (``package-0-die-1``). Intel's multi-die Xeons have a real counter per die; AMD kernels publish per-die zones that
  all read the one package counter. We meter the package zone when there is one; otherwise its die zones, once
  when they mirror each other (equal readings), each when they differ.
- Sub-zones such as ``core`` and ``uncore`` are already inside their package; ``psys`` overlaps everything.
- Since Linux 5.10 the ``energy_uj`` files are readable by root only, which gets its own message.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path

from pytest_aienergyscore.meters.base import Meter, MeterUnavailable, Reading, now
from pytest_aienergyscore.records.figures import Measurement

POWERCAP = Path("/sys/class/powercap")
POWER_BOUND_W = 500.0  # above any CPU package's draw today; the wrap watcher reads often enough for this much
MAX_POLL_S = 2.0  # the watcher's longest pause, whatever the wrap period
MIN_POLL_S = 0.005  # and its shortest, so that a tiny range (only in tests) does not spin a core
MIRROR_READ_ATTEMPTS = 3  # a counter update between two reads of mirrored zones can make them differ once

_PACKAGE_NAME = re.compile(r"^package-(\d+)(?:-die-(\d+))?$")


@dataclass
class _Zone:
    key: str
    scope: str
    energy_file: Path
    max_range_uj: int
    last_raw_uj: int = 0
    total_uj: int = 0
    wraps: int = 0
    note: str = ""


def _read_int(path: Path) -> int:
    return int(path.read_text().strip())


def _zone_dirs(root: Path) -> list[Path]:
    """Top-level zones first (intel-rapl:0), then sub-zones (intel-rapl:0:1); the mmio mirror last."""
    dirs = [p for p in root.glob("*rapl*:*") if (p / "energy_uj").exists()]
    return sorted(dirs, key=lambda p: ("mmio" in p.name, p.name.count(":"), p.name))


def _zone_name(zone_dir: Path) -> str:
    name_file = zone_dir / "name"
    return name_file.read_text().strip() if name_file.exists() else zone_dir.name


def _read_energy(energy_file: Path, root: Path) -> int:
    try:
        return _read_int(energy_file)
    except PermissionError:
        raise MeterUnavailable(
            f"RAPL counters exist but {energy_file} is readable by root only (Linux >= 5.10); run as root "
            f"or grant read access (chmod o+r {root}/*rapl*/energy_uj)"
        ) from None


def _mirror_each_other(energy_files: list[Path], root: Path) -> bool:
    """Whether these die zones all read one counter: real per-die counters never agree to the microjoule."""
    return any(len({_read_energy(f, root) for f in energy_files}) == 1 for _ in range(MIRROR_READ_ATTEMPTS))


def _package_zones(dirs: list[Path], root: Path) -> list[tuple[Path, str, str]]:
    """(zone folder, device key, note) of each physical package once, or of each real die of a die-only package."""
    packages: dict[str, dict[str | None, Path]] = {}
    for zone_dir in dirs:
        match = _PACKAGE_NAME.match(_zone_name(zone_dir))
        if match is None or zone_dir.name.count(":") > 1:
            continue
        # the first folder of a name wins: dirs are sorted so that the mmio mirror of the same zone comes last
        packages.setdefault(match[1], {}).setdefault(match[2], zone_dir)
    chosen: list[tuple[Path, str, str]] = []
    for package, zones in packages.items():
        if None in zones:  # the package's own zone covers its dies
            chosen.append((zones[None], f"package-{package}", ""))
            continue
        dies = sorted(zones.items(), key=lambda item: int(item[0] or 0))
        if len(dies) > 1 and _mirror_each_other([d / "energy_uj" for _, d in dies], root):
            note = f"{len(dies)} die zones read one package counter: counted once"
            chosen.append((dies[0][1], f"package-{package}", note))
        else:
            chosen.extend((d, f"package-{package}-die-{die}", "") for die, d in dies)
    return chosen


def _dram_zones(dirs: list[Path], package_dirs: set[Path], skipped: set[Path]) -> list[tuple[Path, str]]:
    """(zone folder, key) of each DRAM zone, except those under a package zone that is not metered (a mirror)."""
    found: list[tuple[Path, str]] = []
    for zone_dir in dirs:
        if _zone_name(zone_dir) != "dram":
            continue
        parent = zone_dir.parent / zone_dir.name.rsplit(":", 1)[0]
        if parent in skipped and parent not in package_dirs:
            continue
        found.append((zone_dir, f"dram-{parent.name.rsplit(':', 1)[-1]}"))
    return found


def discover_zones(root: Path = POWERCAP) -> list[_Zone]:
    """The zones to meter: packages and DRAM, each once. Raises MeterUnavailable with the reason otherwise."""
    dirs = _zone_dirs(root)
    if not dirs:
        raise MeterUnavailable(f"no RAPL zones under {root} (not an Intel/AMD CPU with powercap, or a VM)")
    packages = _package_zones(dirs, root)
    package_dirs = {zone_dir for zone_dir, _, _ in packages}
    all_package_level = {d for d in dirs if _PACKAGE_NAME.match(_zone_name(d)) and d.name.count(":") == 1}
    wanted = [(d, key, "cpu", note) for d, key, note in packages]
    wanted += [(d, key, "ram", "") for d, key in _dram_zones(dirs, package_dirs, all_package_level - package_dirs)]
    zones: list[_Zone] = []
    seen: set[str] = set()
    for zone_dir, key, scope, note in wanted:
        if key in seen:
            continue
        seen.add(key)
        energy_file = zone_dir / "energy_uj"
        raw = _read_energy(energy_file, root)
        max_range = _read_int(zone_dir / "max_energy_range_uj")
        zones.append(_Zone(key, scope, energy_file, max_range, last_raw_uj=raw, note=note))
    if not zones:
        raise MeterUnavailable(f"RAPL zones under {root} have no package or dram zone")
    return zones


def poll_interval_s(max_range_uj: int, power_bound_w: float = POWER_BOUND_W) -> float:
    """Seconds between background reads: a quarter of the time the counter takes to wrap at ``power_bound_w``."""
    wrap_period_s = max_range_uj / 1e6 / power_bound_w
    return min(max(wrap_period_s / 4.0, MIN_POLL_S), MAX_POLL_S)


class RaplMeter(Meter):
    """Measured CPU package (scope cpu) and DRAM (scope ram) energy of the whole machine."""

    name = "rapl"
    kind = "measured"
    counter_period_s = 0.001  # RAPL updates about every millisecond
    cpu_scope = "machine"

    def __init__(self, root: Path = POWERCAP, power_bound_w: float = POWER_BOUND_W) -> None:
        super().__init__()
        self.root = root
        self._zones = discover_zones(root)
        self._lock = threading.Lock()  # the watcher and the window edges update the same totals
        self.poll_s = min(poll_interval_s(z.max_range_uj, power_bound_w) for z in self._zones)
        self._watcher: _WrapWatcher | None = None

    def read(self) -> Reading:
        with self._lock:
            mono, wall = now()
            joules: dict[str, float] = {}
            for zone in self._zones:
                raw = _read_int(zone.energy_file)
                delta = raw - zone.last_raw_uj
                if delta < 0:  # wrapped once since the last read (the watcher makes sure it is only once)
                    delta += zone.max_range_uj + 1
                    zone.wraps += 1
                zone.total_uj += delta
                zone.last_raw_uj = raw
                joules[zone.key] = zone.total_uj / 1e6
            return Reading(mono, wall, joules)

    # -- the wrap watcher runs exactly while a window is open -----------------------------------------------
    def begin_window(self, name: str) -> None:
        super().begin_window(name)
        if self._watcher is None:
            self._watcher = _WrapWatcher(self, self.poll_s)
            self._watcher.start()

    def end_window(self, name: str) -> Measurement:
        try:
            return super().end_window(name)
        finally:
            self._stop_watcher_when_idle()

    def cancel_window(self, name: str) -> None:
        super().cancel_window(name)
        self._stop_watcher_when_idle()

    def close(self) -> None:
        self._stop_watcher()

    def _stop_watcher_when_idle(self) -> None:
        if not self.open_windows():
            self._stop_watcher()

    def _stop_watcher(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()

    @property
    def background_reads(self) -> int:
        """Reads the watcher has made while windows were open (for tests and the doctor)."""
        return self._watcher.reads if self._watcher is not None else 0

    def watching(self) -> bool:
        return self._watcher is not None

    # -- descriptions ---------------------------------------------------------------------------------------
    def device_scopes(self) -> dict[str, str]:
        return {zone.key: zone.scope for zone in self._zones}

    def scope_description(self) -> str:
        parts = "CPU package and DRAM" if any(z.scope == "ram" for z in self._zones) else "CPU package"
        return f"{parts} energy of the whole machine (RAPL): every process's, not only the benchmark's"

    def device_facts(self) -> tuple[dict[str, object], ...]:
        facts: list[dict[str, object]] = []
        for z in self._zones:
            fact: dict[str, object] = {
                "device": z.key,
                "scope": z.scope,
                "file": str(z.energy_file),
                "max_energy_range_uj": z.max_range_uj,
                "wrap_watch_interval_s": self.poll_s,
            }
            if z.note:
                fact["note"] = z.note
            facts.append(fact)
        return tuple(facts)


class _WrapWatcher:
    """Reads the meter every ``interval_s`` so that no counter wraps twice between two reads of a long window."""

    def __init__(self, meter: RaplMeter, interval_s: float) -> None:
        self.meter = meter
        self.interval_s = interval_s
        self.reads = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aienergyscore-rapl-wraps", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.meter.read()
            except (OSError, ValueError):  # a vanished or torn file: the window's own end read will say so
                continue
            self.reads += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
