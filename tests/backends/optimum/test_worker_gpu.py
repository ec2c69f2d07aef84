"""Inside the worker (optimum-benchmark's environment): which GPU codecarbon read and which GPU the model ran on.

:mod:`pytest_aienergyscore.backends.optimum.worker_gpu` reads codecarbon's internals and torch's devices, so these
tests run it over fake NVML (no GPU here) and, where the optimum environment exists, against the real codecarbon.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_aienergyscore.backends.optimum.worker_gpu import (
    codecarbon_gpus,
    cuda_uuid,
    gpu_facts,
    model_devices,
    visible_uuid,
)
from tests.support.fake_pynvml import make_gpus, make_pynvml
from tests.support.optimum_env import MISSING, OPTIMUM_PYTHON

pytestmark = pytest.mark.optimum

REPO = Path(__file__).resolve().parents[3]
UUIDS = [gpu.uuid for gpu in make_gpus(3)]

needs_env = pytest.mark.skipif(not OPTIMUM_PYTHON.exists(), reason=MISSING)


class GPU:  # named as codecarbon's GPU hardware class, which the worker looks for
    def __init__(self, ids: list[int], devices: list[Any]) -> None:
        self._ids, self.devices = ids, SimpleNamespace(devices=devices)

    def _get_gpu_ids(self) -> list[int]:
        return self._ids


def test_the_gpus_codecarbon_read_are_named_by_the_uuid_of_its_own_handles(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = make_pynvml(make_gpus(3))
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")  # NVML ignores it: codecarbon's ids are NVML indices
    nvml.nvmlInit()
    devices = [SimpleNamespace(gpu_index=i, handle=nvml.nvmlDeviceGetHandleByIndex(i)) for i in range(3)]
    devices[1]._use_power_fallback = True
    tracker = SimpleNamespace(_hardware=[SimpleNamespace(), GPU([1], devices)])
    found = codecarbon_gpus([tracker])
    assert found["tracked_uuids"] == [UUIDS[1]] and found["power_fallback"] == [True]
    assert found["codecarbon_gpus"] == [{"nvml_index": 1, "uuid": UUIDS[1], "power_fallback": True}]


CODECARBON_CONTRACT = """
import json, sys
from types import SimpleNamespace
from tests.support.fake_pynvml import make_gpus, make_pynvml
from tests.support.optimum_env import MISSING, OPTIMUM_PYTHON
gpus = make_gpus(3)
gpus[2].energy_mj = None  # no counter: codecarbon averages power samples
sys.modules["pynvml"] = make_pynvml(gpus)
from codecarbon.external.hardware import GPU
from pytest_aienergyscore.backends.optimum.worker_gpu import codecarbon_gpus
print(json.dumps(codecarbon_gpus([SimpleNamespace(_hardware=[GPU.from_utils(gpu_ids=[1, 2])])])))
"""


@needs_env
def test_the_worker_reads_real_codecarbons_gpu_hardware_as_it_is_built() -> None:
    """codecarbon's GPU internals (its ids, devices, handles, fallback flag) as the worker reads them, from the real
    codecarbon in the optimum environment over fake NVML: if codecarbon renames them, this fails here, not on a GPU."""
    done = subprocess.run(
        [str(OPTIMUM_PYTHON), "-s", "-c", CODECARBON_CONTRACT],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["tracked_uuids"] == UUIDS[1:]  # NVML indices 1 and 2, exactly the handles codecarbon holds
    assert found["power_fallback"] == [False, True]


def test_the_models_devices_are_where_its_weights_are() -> None:
    split = SimpleNamespace(parameters=lambda: [SimpleNamespace(device="cuda:1"), SimpleNamespace(device="cuda:0")])
    assert model_devices(split) == ["cuda:0", "cuda:1"]
    assert model_devices(SimpleNamespace(device="cuda:0")) == ["cuda:0"]  # a diffusers pipeline
    assert model_devices(SimpleNamespace(parameters=lambda: [SimpleNamespace(device="cpu")])) == []
    assert model_devices(None) == []


def test_a_cuda_device_is_named_by_torchs_uuid_or_through_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", make_pynvml(make_gpus(3)))
    props = {0: SimpleNamespace(uuid=UUIDS[2][4:]), 1: SimpleNamespace()}  # torch gives the UUID without "GPU-"
    cuda = SimpleNamespace(current_device=lambda: 0, get_device_properties=lambda i: props[i])
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,0")
    assert cuda_uuid("cuda:0") == cuda_uuid("cuda") == UUIDS[2]
    assert cuda_uuid("cuda:1") == UUIDS[0]  # no UUID from torch: ordinal 1 is NVML index 0 under "2,0"
    assert visible_uuid(0, UUIDS[1][:12]) == UUIDS[1] and visible_uuid(1, None) == UUIDS[1]
    with pytest.raises(LookupError, match="CUDA device 2 is not among CUDA_VISIBLE_DEVICES=2,0"):
        visible_uuid(2, "2,0")


def test_facts_the_worker_cannot_read_become_a_problem_line_not_a_failure() -> None:
    broken = SimpleNamespace(_hardware=[GPU([0], [SimpleNamespace(gpu_index=0)])])  # no handle: codecarbon moved on
    facts = gpu_facts([broken], [])
    assert "which GPUs codecarbon read: AttributeError" in facts["problem"]
    assert "no model weights were found on a CUDA device" in facts["problem"]
    assert facts["model_uuids"] == []
