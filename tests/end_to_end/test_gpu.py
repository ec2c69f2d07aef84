"""The real NvmlMeter on a real GPU: what the fake in tests/fake_pynvml.py cannot show.

Skipped, with the reason, where NVML cannot start or torch has no CUDA. About a minute on a GPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_aienergyscore.meters import MeterUnavailable
from pytest_aienergyscore.meters.gpu_state import IDLE_SECONDS, other_processes
from pytest_aienergyscore.meters.nvml import NvmlMeter, load_pynvml, visible_nvml_indices
from pytest_aienergyscore.rules.gpu_survey import UNKNOWN
from tests.support.optimum_env import MISSING, OPTIMUM_PYTHON

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


# -- the survey before the first benchmark (issue 12) ---------------------------------------------------------------

CUDA_HOLDER = """
import sys, time, torch
x = torch.ones(1024, 1024, device="cuda:0")
torch.cuda.synchronize()
print("ready", flush=True)
time.sleep(120)
"""


def test_survey_measures_idle_power_and_reads_the_limits(meter: NvmlMeter) -> None:
    [state] = meter.survey_gpus(IDLE_SECONDS)
    assert state["uuid"] == meter.device_facts()[0]["uuid"]
    limit = state["power_limit_w"]
    assert isinstance(limit, float) and 50.0 <= limit <= 1500.0, state
    assert state["default_power_limit_w"] == UNKNOWN or 50.0 <= state["default_power_limit_w"] <= 1500.0, state
    assert state["mig_mode"] in ("enabled", "disabled", UNKNOWN), state
    idle = state["idle_power_w"]
    assert isinstance(idle, float), state.get("unknown_because")  # the counter moved through the idle window
    assert 5.0 <= idle <= limit, state
    others = state["other_processes"]
    assert others == UNKNOWN or os.getpid() not in [p["pid"] for p in others], state  # this process holds cuda:0


def test_another_process_computing_on_the_gpu_is_seen(meter: NvmlMeter, nvml: Any) -> None:
    holder = subprocess.Popen([sys.executable, "-c", CUDA_HOLDER], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
        handle = meter._handles["cuda:0"]
        pids = [p["pid"] for p in other_processes(nvml, handle, own={os.getpid()})]
        assert holder.pid in pids, f"NVML lists {pids}, not the child {holder.pid} (another PID namespace?)"
        [state] = meter.survey_gpus(0.5)  # a child is this session's own work (a backend's worker)
        assert holder.pid not in [p["pid"] for p in state["other_processes"]]
    finally:
        holder.kill()
        holder.wait()


# -- the optimum backend's GPU figure: codecarbon's NVML reading, guarded and cross-checked (issue 12) ---------------

CROSS_CHECK_SAMPLES = 200  # a tiny model on a GPU: prefill about a second, generation several, so the guards bite
CROSS_CHECK_BENCHMARK = """
import json, pathlib

CASE = json.loads(pathlib.Path(__file__).with_name("case.json").read_text())

def test_text_generation(energy_star):
    energy_star(task="text_generation", model=CASE["model"], dataset=CASE["dataset"])
"""


def _optimum_sees_cuda() -> str | None:
    """Why the optimum environment cannot run on this GPU, or None when it can."""
    if not OPTIMUM_PYTHON.exists():
        return MISSING
    probe = subprocess.run(
        [str(OPTIMUM_PYTHON), "-s", "-c", "import torch; print(torch.cuda.is_available())"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return (
        None
        if probe.stdout.strip() == "True"
        else f"the optimum environment's torch sees no CUDA ({probe.stderr[-200:]})"
    )


def test_codecarbons_gpu_figure_is_the_right_gpu_and_agrees_with_our_reading_around_the_worker(
    tmp_path: Path, nvml: Any, torch: Any
) -> None:
    why_not = _optimum_sees_cuda()
    if why_not:
        pytest.skip(why_not)
    from pytest_aienergyscore.records.record import Record
    from pytest_aienergyscore.rules.comparability import not_comparable_reasons
    from tests.support.tiny_models import build_tiny_model

    model = build_tiny_model(
        "text_generation", Path(__file__).resolve().parents[2] / ".cache" / "tiny-models" / "text_generation"
    )
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"text": f"Prompt number {i} about the sea."}) + "\n" for i in range(CROSS_CHECK_SAMPLES))
    )
    (tmp_path / "case.json").write_text(json.dumps({"model": str(model), "dataset": str(prompts)}))
    (tmp_path / "test_bench.py").write_text(CROSS_CHECK_BENCHMARK)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIENERGYSCORE_", "BENCHMARK_BACKEND", "PYTEST_"))}
    env.update(HF_HUB_OFFLINE="1", AIENERGYSCORE_METER="nvml")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "--energy-warmup=2",
            f"--optimum-python={OPTIMUM_PYTHON}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    [report_path] = (tmp_path / "results").glob("*/*/benchmark_report.json")
    report = json.loads(report_path.read_text())
    meta = report["metadata"]["optimum"]
    cuda0 = nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(visible_nvml_indices(nvml)[0]))
    cuda0 = cuda0.decode() if isinstance(cuda0, bytes) else cuda0
    [facts] = meta["gpu"]
    assert facts["tracked_uuids"] == facts["model_uuids"] == [cuda0], facts
    assert facts["power_fallback"] == [False]  # an H100-class GPU has the counter
    assert meta["versions"]["codecarbon"]
    [check] = meta["gpu_cross_check"]
    assert check["agrees"], check
    assert check["ours_j"] > check["codecarbon_windows_j"] >= check["codecarbon_phases_j"] > 0, check
    record = Record.from_dict(report)
    for phase in record.phases:
        gpu = [d for d in phase.measurement.devices if d.scope == "gpu"]
        assert [d.meter for d in gpu] == ["codecarbon-nvml"], phase.name
        assert phase.measurement.valid, (phase.name, phase.measurement.warnings)
    assert not any("energy counter" in reason for reason in not_comparable_reasons(record))


# -- which processes hold a GPU, and where a local server runs (issue 12, the vllm backend's GPUs) -------------------

CUDA_SERVER = """
import socket, time, torch
held = torch.ones(1024, 1024, device="cuda:0")
torch.cuda.synchronize()
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen()
print(server.getsockname()[1], flush=True)
time.sleep(120)
"""


def _cuda0_uuid(nvml: Any) -> str:
    got = nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(visible_nvml_indices(nvml)[0]))
    return got.decode() if isinstance(got, bytes) else str(got)


def test_a_process_holding_cuda_memory_is_found_by_gpu_pids(torch: Any, nvml: Any) -> None:
    from pytest_aienergyscore.meters.gpu_processes import foreign_pids, gpu_pids, gpus_held_by

    held = torch.ones(1024, 1024, device="cuda:0")
    torch.cuda.synchronize()
    found = gpu_pids(nvml)
    [cuda0] = [gpu for gpu in found if gpu.ordinal == 0]
    assert cuda0.uuid == _cuda0_uuid(nvml) and cuda0.unreadable is None, cuda0
    if os.getpid() not in cuda0.pids:
        foreign = foreign_pids(found)
        assert foreign, f"NVML lists {cuda0.pids} on cuda:0, not this process ({os.getpid()}), and no foreign pid"
        pytest.skip(f"NVML reports pids of another PID namespace ({sorted(foreign)}): a container without --pid=host")
    used = cuda0.memory[os.getpid()]
    assert used is None or used >= held.numel() * held.element_size(), cuda0.memory
    assert [gpu.uuid for gpu in gpus_held_by(found, [os.getpid()])] == [cuda0.uuid]


def test_a_local_server_is_located_on_the_gpu_its_process_holds(torch: Any, nvml: Any) -> None:
    from pytest_aienergyscore.backends.vllm.endpoint import parse_endpoint
    from pytest_aienergyscore.backends.vllm.server import locate_server

    server = subprocess.Popen([sys.executable, "-c", CUDA_SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        place = locate_server(parse_endpoint(f"http://127.0.0.1:{port}/v1"))
    finally:
        server.kill()
        server.wait()
    assert place.pids is not None and server.pid in place.pids, place
    if place.gpus is None and "another PID namespace" in place.how:
        pytest.skip(f"NVML reports the host's pids here: {place.how}")
    assert place.gpus == [{"cuda": 0, "uuid": _cuda0_uuid(nvml)}], place
