"""Backends that generate a task's work, created by name and imported only when asked for."""

from __future__ import annotations

from .base import Backend, BackendError, LoadRequest, ModelUnavailable, PhaseWork, Prepared

__all__ = ["Backend", "BackendError", "LoadRequest", "ModelUnavailable", "PhaseWork", "Prepared", "create_backend"]


def create_backend(name: str) -> Backend:
    """The backend called ``name``; its heavy imports happen on first use, not here."""
    if name == "pytorch":
        from .pytorch import PytorchBackend

        return PytorchBackend()
    if name == "vllm":
        from .vllm import VllmBackend

        return VllmBackend()
    if name == "optimum":
        from .optimum import OptimumBackend

        return OptimumBackend()
    raise BackendError(f"backend {name!r} cannot run energy_star benchmarks in this version yet; use --backend pytorch")
