"""CPU package and DRAM energy from Linux powercap (RAPL) counters under ``/sys/class/powercap``.

Why the care: the counters wrap at ``max_energy_range_uj``; the same package can appear twice (``intel-rapl`` and the
``intel-rapl-mmio`` mirror); sub-zones such as ``core`` and ``uncore`` are already inside their package; ``psys``
overlaps everything. We meter each package once and each DRAM zone once, and nothing else. Since Linux 5.10 the
``energy_uj`` files are readable by root only, which gets its own message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .base import Meter, MeterUnavailable, Reading, now

POWERCAP = Path("/sys/class/powercap")


@dataclass
class _Zone:
    key: str
    scope: str
    energy_file: Path
    max_range_uj: int
    last_raw_uj: int = 0
    total_uj: int = 0


def _read_int(path: Path) -> int:
    return int(path.read_text().strip())


def _zone_dirs(root: Path) -> list[Path]:
    """Top-level zones first (intel-rapl:0), then sub-zones (intel-rapl:0:1); the mmio mirror last."""
    dirs = [p for p in root.glob("*rapl*:*") if (p / "energy_uj").exists()]
    return sorted(dirs, key=lambda p: ("mmio" in p.name, p.name.count(":"), p.name))


def discover_zones(root: Path = POWERCAP) -> list[_Zone]:
    """The zones to meter: packages and DRAM, each once. Raises MeterUnavailable with the reason otherwise."""
    dirs = _zone_dirs(root)
    if not dirs:
        raise MeterUnavailable(f"no RAPL zones under {root} (not an Intel/AMD CPU with powercap, or a VM)")
    zones: list[_Zone] = []
    seen: set[str] = set()
    for zone_dir in dirs:
        name = (zone_dir / "name").read_text().strip() if (zone_dir / "name").exists() else zone_dir.name
        is_sub = zone_dir.name.count(":") > 1
        if name.startswith("package") and not is_sub:
            key, scope = name, "cpu"
        elif name == "dram":
            parent = zone_dir.name.rsplit(":", 1)[0]
            key, scope = f"dram-{parent.rsplit(':', 1)[-1]}", "ram"
        else:
            continue  # core, uncore, psys: inside or overlapping a package
        if key in seen:
            continue  # the mmio mirror of a package already counted
        seen.add(key)
        energy_file = zone_dir / "energy_uj"
        try:
            raw = _read_int(energy_file)
        except PermissionError:
            raise MeterUnavailable(
                f"RAPL counters exist but {energy_file} is readable by root only (Linux >= 5.10); run as root "
                f"or grant read access (chmod o+r {root}/*rapl*/energy_uj)"
            ) from None
        max_range = _read_int(zone_dir / "max_energy_range_uj")
        zones.append(_Zone(key, scope, energy_file, max_range, last_raw_uj=raw))
    if not zones:
        raise MeterUnavailable(f"RAPL zones under {root} have no package or dram zone")
    return zones


class RaplMeter(Meter):
    """Measured CPU package (scope cpu) and DRAM (scope ram) energy of the whole machine."""

    name = "rapl"
    kind = "measured"
    counter_period_s = 0.001  # RAPL updates about every millisecond

    def __init__(self, root: Path = POWERCAP) -> None:
        super().__init__()
        self.root = root
        self._zones = discover_zones(root)

    def read(self) -> Reading:
        mono, wall = now()
        joules: dict[str, float] = {}
        for zone in self._zones:
            raw = _read_int(zone.energy_file)
            delta = raw - zone.last_raw_uj
            if delta < 0:  # wrapped once since the last read
                delta += zone.max_range_uj + 1
            zone.total_uj += delta
            zone.last_raw_uj = raw
            joules[zone.key] = zone.total_uj / 1e6
        return Reading(mono, wall, joules)

    def device_scopes(self) -> dict[str, str]:
        return {zone.key: zone.scope for zone in self._zones}

    def device_facts(self) -> tuple[dict[str, object], ...]:
        return tuple(
            {"device": z.key, "scope": z.scope, "file": str(z.energy_file), "max_energy_range_uj": z.max_range_uj}
            for z in self._zones
        )
