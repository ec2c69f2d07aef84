"""Backends that generate a task's work, found by name through the ``pytest_aienergyscore.backends`` entry points.

Ours are registered in pyproject.toml exactly as a third party's would be, so a team can ship a backend for its own
server (SGLang, TGI, an internal one) in its own package and select it with ``--backend NAME``. Names are read
cheaply (metadata only); a backend's module is imported only when a benchmark first asks for it.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint

from pytest_aienergyscore.backends.base import (
    Backend,
    BackendError,
    LoadRequest,
    ModelUnavailable,
    PhaseWork,
    Prepared,
    ProtocolRefused,
)
from pytest_aienergyscore.config.registry import BACKEND_ENTRY_POINTS, registered_entry_points

__all__ = [
    "ENTRY_POINT_GROUP",
    "Backend",
    "BackendError",
    "LoadRequest",
    "ModelUnavailable",
    "PhaseWork",
    "Prepared",
    "ProtocolRefused",
    "backend_class",
    "backend_names",
    "create_backend",
]

ENTRY_POINT_GROUP = BACKEND_ENTRY_POINTS


@cache
def _registered() -> dict[str, EntryPoint]:
    """Every registered backend by name, read once: the metadata scan is shared by the settings and the runner."""
    return registered_entry_points(ENTRY_POINT_GROUP)


def backend_names() -> tuple[str, ...]:
    """The names ``--backend`` accepts, sorted; reading them imports no backend."""
    return tuple(sorted(_registered()))


@cache
def backend_class(name: str) -> type[Backend]:
    """The class registered as ``name``, imported on first use; a bad registration is one line naming the package."""
    entry = _registered().get(name)
    if entry is None:
        raise BackendError(f"unknown backend {name!r}; allowed: {', '.join(backend_names()) or 'none registered'}")
    try:
        loaded = entry.load()
    except Exception as err:  # a third party's broken module must not end in our traceback
        raise BackendError(
            f"backend {name!r} ({entry.value}) cannot be imported: {type(err).__name__}: {err}"
        ) from None
    if not (isinstance(loaded, type) and issubclass(loaded, Backend)):
        raise BackendError(f"backend {name!r} ({entry.value}) is not a subclass of pytest_aienergyscore Backend")
    return loaded


def create_backend(name: str) -> Backend:
    """A new backend called ``name``; its heavy imports (torch, httpx, ...) happen on first use, not here."""
    return backend_class(name)()
