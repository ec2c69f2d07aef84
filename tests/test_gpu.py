"""The real NvmlMeter on a real GPU: what the fake in tests/fake_pynvml.py cannot show.

Skipped, with the reason, where NVML cannot start or torch has no CUDA. About 45 s on a GPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_aienergyscore.meters import MeterUnavailable
from pytest_aienergyscore.meters.nvml import NvmlMeter, load_pynvml, visible_nvml_indices

pytestmark = pytest.mark.gpu

WINDOW_S = 3.0


@pytest.fixture(scope="module")
def nvml() -> Any:
    try:
        return load_pynvml()
    except MeterUnavailable as err:
        pytest.skip(f"no usable NVML: {err}")


@pytest.fixture(scope="module")
def torch(nvml: Any) -> Any:
    try:
        import torch
    except ImportError:
        pytest.skip("torch is not installed")
    if not torch.cuda.is_available():
        pytest.skip(f"torch {torch.__version__} sees no CUDA device")
    torch.cuda.init()
    return torch


@pytest.fixture(scope="module")
def meter(torch: Any) -> Iterator[NvmlMeter]:
    meter = NvmlMeter((0,))  # after CUDA started, so cuda:0 is mapped through torch's UUID
    yield meter
    meter.close()


@pytest.fixture(scope="module")
def matmul_load(torch: Any) -> Callable[[float], None]:
    a = torch.randn(8192, 8192, device="cuda:0", dtype=torch.float16)
    b = torch.randn_like(a)
    c = torch.empty_like(a)

    def run(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            for _ in range(10):
                torch.mm(a, b, out=c)
            torch.cuda.synchronize()

    run(1.0)  # clocks up, kernels chosen: the windows below start on a warm GPU
    return run


def measure(meter: NvmlMeter, name: str, work: Callable[[], None]) -> tuple[float, float]:
    meter.begin_window(name)
    work()
    m = meter.end_window(name)
    assert m.valid, m.warnings
    assert m.meter == "nvml"  # the counter, not the power-sampling fallback
    return m.joules(), m.duration_s


def test_load_costs_more_than_idle_at_plausible_power(meter: NvmlMeter, matmul_load: Callable[[float], None]) -> None:
    idle_j, idle_s = measure(meter, "idle", lambda: time.sleep(WINDOW_S))
    busy_j, busy_s = measure(meter, "load", lambda: matmul_load(WINDOW_S))
    assert busy_j > idle_j
    assert busy_j / busy_s > 1.5 * idle_j / idle_s
    limit_w = meter.device_facts()[0]["power_limit_w"]
    assert limit_w, "NVML gave no power limit"
    # 5 % over the limit allowed: the counter's 100 ms steps at the two edges of a 3 s window
    assert 20.0 <= busy_j / busy_s <= 1.05 * limit_w


def test_metered_gpu_is_the_one_cuda_calls_0(meter: NvmlMeter, torch: Any, nvml: Any) -> None:
    props = torch.cuda.get_device_properties(0)
    if not hasattr(props, "uuid"):
        pytest.skip(f"torch {torch.__version__} does not report device UUIDs")
    uuid = str(props.uuid)
    expected = uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
    assert meter.device_facts()[0]["uuid"] == expected
    # the CUDA_VISIBLE_DEVICES route, used when torch has not started CUDA, must land on the same GPU
    first = nvml.nvmlDeviceGetHandleByIndex(visible_nvml_indices(nvml)[0])
    got = nvml.nvmlDeviceGetUUID(first)
    assert (got.decode() if isinstance(got, bytes) else got) == expected


def test_same_load_same_energy(meter: NvmlMeter, matmul_load: Callable[[float], None]) -> None:
    energies = [measure(meter, f"repeat-{i}", lambda: matmul_load(WINDOW_S))[0] for i in range(3)]
    assert max(energies) <= 1.10 * min(energies), energies


def test_doctor_checks_the_counter(tmp_path: Path, nvml: Any, torch: Any) -> None:
    out = tmp_path / "doctor.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest_aienergyscore", "doctor", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    gpu = json.loads(out.read_text())["gpu"]
    assert "skipped" not in gpu and "error" not in gpu, gpu
    period = gpu["counter_update"]["median_period_s"]
    assert period is not None and 0.005 <= period <= 0.5, gpu["counter_update"]
    ratio = gpu["load"]["counter_over_integrated"]
    assert ratio is not None and 0.8 <= ratio <= 1.2, gpu["load"]
