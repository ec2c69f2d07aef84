"""A fake of the parts of ``pynvml`` (nvidia-ml-py) that the NVML meter calls, for machines without a GPU.

It keeps the library's contract where the meter depends on it: calls before ``nvmlInit`` fail, handles are opaque and
only valid for this library instance, energy is cumulative mJ, power and the power limit are mW, an unsupported
query raises ``NVMLError_NotSupported``, an unknown index or UUID raises as NVML does. Each device's energy counter is
scripted: a number the test sets between reads, a list consumed one value per query (the last one repeats), or a
callable asked on every query.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9

_MESSAGES = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NOT_FOUND: "Not Found",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
}


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return _MESSAGES.get(self.value, f"Unknown Error {self.value}")


class NVMLError_Uninitialized(NVMLError):
    def __init__(self) -> None:
        super().__init__(NVML_ERROR_UNINITIALIZED)


class NVMLError_InvalidArgument(NVMLError):
    def __init__(self) -> None:
        super().__init__(NVML_ERROR_INVALID_ARGUMENT)


class NVMLError_NotSupported(NVMLError):
    def __init__(self) -> None:
        super().__init__(NVML_ERROR_NOT_SUPPORTED)


class NVMLError_NotFound(NVMLError):
    def __init__(self) -> None:
        super().__init__(NVML_ERROR_NOT_FOUND)


class NVMLError_DriverNotLoaded(NVMLError):
    def __init__(self) -> None:
        super().__init__(NVML_ERROR_DRIVER_NOT_LOADED)


Counter = int | Sequence[int] | Callable[[], int]


@dataclass
class FakeProcess:
    """A process holding a GPU, as NVML lists it: a pid in NVML's PID namespace, and its GPU memory in bytes (None
    where the driver cannot tell, as pynvml reports NVML_VALUE_NOT_AVAILABLE). ``graphics`` puts it in the graphics
    list instead of the compute list."""

    pid: int
    used_memory: int | None = 1 << 30
    graphics: bool = False
    name: str | None = None  # what nvmlSystemGetProcessName answers; None: NVML does not know it (NotFound)


class _ProcessInfo:
    """Like pynvml's c_nvmlProcessInfo_t as returned: a fresh struct per query, read through attributes."""

    __slots__ = ("computeInstanceId", "gpuInstanceId", "pid", "usedGpuMemory")

    def __init__(self, process: FakeProcess) -> None:
        self.pid = process.pid
        self.usedGpuMemory = process.used_memory
        self.gpuInstanceId = self.computeInstanceId = 0xFFFFFFFF


class _MemoryInfo:
    """Like pynvml's c_nvmlMemory_t: bytes, read through attributes (an idle 80 GB GPU; codecarbon reads it)."""

    __slots__ = ("free", "total", "used")

    def __init__(self) -> None:
        self.total = self.free = 80 << 30
        self.used = 0


@dataclass
class FakeGpu:
    """One GPU. ``energy_mj`` is None for a GPU without the total-energy counter (older than Volta)."""

    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    energy_mj: Counter | None = 0
    power_mw: int | Callable[[], int] = 70_000
    power_limit_mw: int = 700_000
    energy_queries: int = 0
    power_queries: int = 0
    processes: list[FakeProcess] = field(default_factory=list)  # who holds the GPU; the test edits it between queries
    processes_error: int | None = None  # an NVML error code the running-process queries raise (NOT_SUPPORTED, say)
    default_power_limit_mw: int | None = 700_000  # None: the query is not supported
    mig_mode: int | None = 0  # NVML_DEVICE_MIG_DISABLE (0) or ENABLE (1); None: not supported (pre-Ampere GPUs)
    _script_pos: int = field(default=0, repr=False)

    def read_energy(self) -> int:
        self.energy_queries += 1
        counter = self.energy_mj
        if counter is None:
            raise NVMLError_NotSupported()
        if callable(counter):
            return int(counter())
        if isinstance(counter, Sequence):
            value = counter[min(self._script_pos, len(counter) - 1)]
            self._script_pos += 1
            return int(value)
        return int(counter)

    def read_power(self) -> int:
        self.power_queries += 1
        return int(self.power_mw() if callable(self.power_mw) else self.power_mw)


class _Handle:
    """Opaque like pynvml's c_nvmlDevice_t pointer: only this library instance knows what it points to."""

    __slots__ = ("index", "owner")

    def __init__(self, owner: object, index: int) -> None:
        self.owner = owner
        self.index = index

    def __repr__(self) -> str:
        return f"<fake nvmlDevice_t {self.index}>"


def make_pynvml(
    gpus: Sequence[FakeGpu],
    driver: str = "550.54.15",
    init_error: int | None = None,
    strings_as_bytes: bool = False,
) -> ModuleType:
    """A fresh fake ``pynvml`` module over ``gpus`` (NVML index = position in the list).

    ``init_error`` makes ``nvmlInit`` fail with that NVML error code (no driver, say); ``strings_as_bytes`` returns
    names, UUIDs and the driver version as bytes, as pynvml releases before 11.5 did.
    """
    mod = ModuleType("pynvml")
    state = {"initialized": False}
    lock = threading.Lock()
    devices = list(gpus)

    def text(value: str) -> str | bytes:
        return value.encode() if strings_as_bytes else value

    def require_init() -> None:
        if not state["initialized"]:
            raise NVMLError_Uninitialized()

    def device(handle: Any) -> FakeGpu:
        require_init()
        if not isinstance(handle, _Handle) or handle.owner is not mod:
            raise NVMLError_InvalidArgument()
        return devices[handle.index]

    def nvmlInit() -> None:
        if init_error is not None:
            raise NVMLError(init_error)
        state["initialized"] = True

    def nvmlShutdown() -> None:
        require_init()
        state["initialized"] = False

    def nvmlDeviceGetCount() -> int:
        require_init()
        return len(devices)

    def nvmlDeviceGetHandleByIndex(index: int) -> _Handle:
        require_init()
        if not 0 <= int(index) < len(devices):
            raise NVMLError_InvalidArgument()
        return _Handle(mod, int(index))

    def nvmlDeviceGetHandleByUUID(uuid: str | bytes) -> _Handle:
        require_init()
        wanted = uuid.decode() if isinstance(uuid, bytes) else uuid
        for index, gpu in enumerate(devices):
            if gpu.uuid == wanted:
                return _Handle(mod, index)
        raise NVMLError_NotFound()

    def nvmlDeviceGetUUID(handle: Any) -> str | bytes:
        return text(device(handle).uuid)

    def nvmlDeviceGetName(handle: Any) -> str | bytes:
        return text(device(handle).name)

    def nvmlDeviceGetTotalEnergyConsumption(handle: Any) -> int:
        gpu = device(handle)
        with lock:
            return gpu.read_energy()

    def nvmlDeviceGetPowerUsage(handle: Any) -> int:
        gpu = device(handle)
        with lock:
            return gpu.read_power()

    def nvmlDeviceGetPowerManagementLimit(handle: Any) -> int:
        return device(handle).power_limit_mw

    def nvmlDeviceGetEnforcedPowerLimit(handle: Any) -> int:
        return device(handle).power_limit_mw

    def nvmlDeviceGetMemoryInfo(handle: Any) -> _MemoryInfo:
        device(handle)
        return _MemoryInfo()

    def nvmlDeviceGetPowerManagementDefaultLimit(handle: Any) -> int:
        limit = device(handle).default_power_limit_mw
        if limit is None:
            raise NVMLError_NotSupported()
        return limit

    def nvmlDeviceGetMigMode(handle: Any) -> list[int]:
        mode = device(handle).mig_mode
        if mode is None:
            raise NVMLError_NotSupported()
        return [mode, mode]  # [current, pending]

    def nvmlSystemGetProcessName(pid: int) -> str | bytes:
        require_init()
        for gpu in devices:
            for process in gpu.processes:
                if process.pid == int(pid) and process.name is not None:
                    return text(process.name)
        raise NVMLError_NotFound()

    def running(handle: Any, graphics: bool) -> list[_ProcessInfo]:
        gpu = device(handle)
        if gpu.processes_error == NVML_ERROR_NOT_SUPPORTED:
            raise NVMLError_NotSupported()  # pynvml raises the subclass that matches the code
        if gpu.processes_error is not None:
            raise NVMLError(gpu.processes_error)
        return [_ProcessInfo(p) for p in gpu.processes if p.graphics == graphics]

    def nvmlDeviceGetComputeRunningProcesses(handle: Any) -> list[_ProcessInfo]:
        return running(handle, graphics=False)

    def nvmlDeviceGetGraphicsRunningProcesses(handle: Any) -> list[_ProcessInfo]:
        return running(handle, graphics=True)

    def nvmlSystemGetDriverVersion() -> str | bytes:
        require_init()
        return text(driver)

    for name, value in dict(locals()).items():
        if name.startswith("nvml"):
            setattr(mod, name, value)
    for cls in (
        NVMLError,
        NVMLError_Uninitialized,
        NVMLError_InvalidArgument,
        NVMLError_NotSupported,
        NVMLError_NotFound,
        NVMLError_DriverNotLoaded,
    ):
        setattr(mod, cls.__name__, cls)
    mod.NVML_ERROR_NOT_SUPPORTED = NVML_ERROR_NOT_SUPPORTED
    mod.NVML_DEVICE_MIG_DISABLE = 0
    mod.NVML_DEVICE_MIG_ENABLE = 1
    mod.NVML_ERROR_DRIVER_NOT_LOADED = NVML_ERROR_DRIVER_NOT_LOADED
    mod.fake_gpus = devices
    return mod


def make_gpus(count: int) -> list[FakeGpu]:
    """``count`` GPUs with distinct, well-formed UUIDs whose first hex digits are all letters (no digit prefix)."""
    letters = "abcdef"
    return [
        FakeGpu(uuid=f"GPU-{letters[i % 6]}{letters[i // 6 % 6]}{i:06x}-1111-2222-3333-{i:012x}", energy_mj=1_000_000)
        for i in range(count)
    ]
