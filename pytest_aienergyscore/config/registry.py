"""Names of the backends and meters that installed packages register, read from metadata without importing them.

Backends and meters are whatever packages register under these entry-point groups (ours in pyproject.toml, a team's
own in its package). Its own module because the options table needs the names for ``--backend`` and
``--energy-meter``, and meters/ and backends/ need the entry points themselves; no backend module is imported at
start-up, and importlib.metadata only when a name is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

BACKEND_ENTRY_POINTS = "pytest_aienergyscore.backends"
METER_ENTRY_POINTS = "pytest_aienergyscore.meters"


def registered_entry_points(group: str) -> dict[str, EntryPoint]:
    """Every entry point of ``group`` by name, first on sys.path winning, read from metadata (nothing is imported).

    Unlike ``importlib.metadata.entry_points``, which keeps one metadata folder per distribution name, this reads
    every folder: a stale ``*.egg-info`` left in a source checkout (found first when Python runs from there) must not
    hide the entry points of the installed copy.
    """
    from importlib.metadata import distributions

    found: dict[str, EntryPoint] = {}
    for dist in distributions():
        for entry in dist.entry_points:
            if entry.group == group:
                found.setdefault(entry.name, entry)
    return found


def registered_backends() -> tuple[str, ...]:
    """The names ``--backend`` accepts: every registered backend, sorted; read when a value is parsed, not before."""
    return tuple(sorted(registered_entry_points(BACKEND_ENTRY_POINTS)))


def registered_meters() -> tuple[str, ...]:
    """The names ``--energy-meter`` accepts: auto and every registered meter; read when a value is parsed."""
    return ("auto", *sorted(registered_entry_points(METER_ENTRY_POINTS)))
