"""Facts about the machine and software a benchmark ran on, for reports and baseline fingerprints.

Collected once per session and cheaply: nothing heavy is imported just to learn its version (a library counts only
if the benchmark already imported it, otherwise its installed version is read from package metadata).
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Any

LIBRARIES = ("torch", "transformers", "diffusers", "optimum-benchmark", "vllm", "aiohttp", "nvidia-ml-py", "pytest")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float | None:
    try:
        import psutil

        return round(psutil.virtual_memory().total / 2**30, 1)
    except Exception:
        return None


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def plugin_version() -> str:
    """The package's one version source (what the wheel's metadata is built from), also in a bare checkout."""
    from pytest_aienergyscore import __version__

    return __version__


def collect_environment(gpu_facts: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    """Machine, GPUs (from the meter), and versions."""
    return {
        "hostname": platform.node(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gib": memory_gib(),
        "gpus": [dict(f) for f in gpu_facts if f.get("scope") == "gpu"],
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "versions": {"pytest-aienergyscore": plugin_version(), **library_versions()},
    }
