"""Shared test set-up: pytester for driving the plugin as a user would, and an offline, repo-local cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache"

# No Hub at test time, and every cache inside the repo's ignored .cache folder.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HOME", str(CACHE / "hf"))
os.environ.setdefault("XDG_CACHE_HOME", str(CACHE))
os.environ.setdefault("VLLM_CACHE_ROOT", str(CACHE / "vllm"))

ENV_VARS = (
    "BENCHMARK_BACKEND",
    "VLLM_ENDPOINT",
    "AIENERGYSCORE_OUTPUT",
    "AIENERGYSCORE_METER",
    "AIENERGYSCORE_GPUS",
    "AIENERGYSCORE_CPU_WATTS",
    "AIENERGYSCORE_CPU_SCOPE",
    "AIENERGYSCORE_DISABLE",
    "AIENERGYSCORE_DATASET",
    "AIENERGYSCORE_SAMPLES",
    "AIENERGYSCORE_REPEAT",
    "AIENERGYSCORE_WARMUP",
    "AIENERGYSCORE_TRUST_REMOTE_CODE",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No plugin setting leaks in from the developer's shell."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def bench(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester project where the plugin's meter is the estimate (the only one this machine has)."""
    clean_env.setenv("AIENERGYSCORE_METER", "estimate")
    return pytester
