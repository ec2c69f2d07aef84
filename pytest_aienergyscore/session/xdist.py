"""pytest-xdist wiring: one worker per visible GPU, each pinned to its GPU, and records that travel to the controller.

Why it works this way:
- ``-n auto`` asks :func:`auto_num_workers`, which counts the GPUs CUDA would show this process (NVML, honouring a
  pre-set ``CUDA_VISIBLE_DEVICES``); without GPUs it returns None and xdist counts CPUs as usual.
- The controller hands each worker one GPU UUID through ``workerinput``; the worker sets ``CUDA_VISIBLE_DEVICES`` to
  it in ``pytest_configure``, before any test can start CUDA, and meters CUDA ordinal 0, which is then that GPU and
  no other. A UUID rather than an index, because CUDA and NVML may number GPUs differently.
- Records ride on each test's teardown report (serialised as JSON), which xdist already sends to the controller
  as the test ends: the controller appends them to its records.jsonl at once and alone writes files. A worker that
  crashes loses only the test it was running. Workers never touch the results folder.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_aienergyscore.records.record import Record

if TYPE_CHECKING:
    from pytest_aienergyscore.session.energy_session import EnergySession

PLUGIN_NAME = "aienergyscore-xdist"
GPU_KEY = "aienergyscore_gpu"  # in workerinput: the UUID of the GPU the worker is pinned to, or None
SESSION_DIR_KEY = "aienergyscore_session_dir"  # in workerinput: the controller's session folder (for scratch files)
RECORDS_ATTR = "aienergyscore_records"  # on a teardown report: the test's records, as JSON strings


def _nvml_visible() -> tuple[Any, list[int]] | None:
    from pytest_aienergyscore.meters import MeterUnavailable
    from pytest_aienergyscore.meters.nvml import load_pynvml, visible_nvml_indices

    try:
        nvml = load_pynvml()
    except MeterUnavailable:
        return None
    try:
        return nvml, visible_nvml_indices(nvml)
    except Exception:
        _shutdown(nvml)
        return None


def _shutdown(nvml: Any) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception:
        return


def visible_gpu_uuids() -> list[str]:
    """UUIDs of the GPUs CUDA shows this process, in CUDA ordinal order; empty without NVML or GPUs."""
    found = _nvml_visible()
    if found is None:
        return []
    nvml, indices = found
    try:
        uuids = [nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i)) for i in indices]
        return [u.decode() if isinstance(u, bytes) else str(u) for u in uuids]
    except Exception:
        return []
    finally:
        _shutdown(nvml)


def auto_num_workers(config: pytest.Config) -> int | None:
    """Workers for ``-n auto``: the visible GPUs, or None to let xdist decide (no GPU, metering off, or overridden)."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS") or _metering_disabled(config):
        return None
    found = _nvml_visible()
    if found is None:
        return None
    nvml, indices = found
    _shutdown(nvml)
    return len(indices) or None


def _metering_disabled(config: pytest.Config) -> bool:
    from pytest_aienergyscore.config.options import OPTIONS_BY_DEST
    from pytest_aienergyscore.config.settings import SettingsError, resolve_value

    spec = OPTIONS_BY_DEST["energy_disable"]
    ini = config.getini(spec.ini)
    try:
        value, _ = resolve_value(spec, config.getoption(spec.dest, None), os.environ, str(ini) if ini else None)
    except SettingsError:
        return False  # reported properly when the settings are built
    return bool(value)


class GpuAllocator:
    """Hands out GPUs to workers: the least-used one first, so replacements after a crash get the freed GPU."""

    def __init__(self, uuids: list[str]) -> None:
        self.uuids = uuids
        self.users = dict.fromkeys(uuids, 0)

    def take(self) -> str | None:
        if not self.uuids:
            return None
        uuid = min(self.uuids, key=lambda u: self.users[u])
        self.users[uuid] += 1
        return uuid

    def release(self, uuid: str | None) -> None:
        if uuid in self.users and self.users[uuid] > 0:
            self.users[uuid] -= 1


class ControllerPlugin:
    """On the controller: pins workers, takes in their records, orders them as collected, explains parallel runs."""

    def __init__(self, config: pytest.Config, energy: EnergySession) -> None:
        self.config = config
        self.energy = energy
        self._allocator: GpuAllocator | None = None
        self.assigned: dict[str, str | None] = {}
        self.order: dict[str, int] = {}
        self.shared_dir: Path | None = None
        self._made_output_dir = False

    @property
    def allocator(self) -> GpuAllocator:
        if self._allocator is None:  # NVML is asked once, and only when xdist starts its first worker
            disabled = self.energy.settings.disabled
            self._allocator = GpuAllocator([] if disabled else visible_gpu_uuids())
        return self._allocator

    def pytest_configure_node(self, node: Any) -> None:
        uuid = self.allocator.take()
        node.workerinput[GPU_KEY] = uuid
        self.assigned[node.gateway.id] = uuid
        if not self.energy.settings.disabled and self.shared_dir is None:  # made now: workers' scratch goes there
            self._made_output_dir = not self.energy.settings.output_dir.exists()
            self.shared_dir = self.energy.session_dir
        if self.shared_dir is not None:
            node.workerinput[SESSION_DIR_KEY] = str(self.shared_dir)

    def pytest_testnodedown(self, node: Any, error: object | None) -> None:
        self.allocator.release(self.assigned.get(node.gateway.id))

    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        if not self.order:
            self.order = {nodeid: index for index, nodeid in enumerate(ids)}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for raw in getattr(report, RECORDS_ATTR, None) or ():
            self.energy.add(Record.from_dict(json.loads(raw)))

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Before the session's files are written: records in collection order (as a serial run writes them)."""
        last = len(self.order)
        self.energy.records.sort(key=lambda r: self.order.get(r.nodeid, last))
        if not self.energy.records and self.shared_dir is not None:  # made for workers that then metered nothing
            _remove_if_empty(self.shared_dir)
            if self._made_output_dir:
                _remove_if_empty(self.shared_dir.parent)
        self.energy.notes.extend(parallel_notes(self.energy.records, self.assigned, len(self.allocator.uuids)))


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # not empty (a failed backend's scratch files are worth keeping) or already gone
        return


def parallel_notes(records: list[Record], assigned: dict[str, str | None], gpus: int) -> list[str]:
    """What a reader of the table must know about figures measured in parallel."""
    notes = []
    pinned = {worker: uuid for worker, uuid in assigned.items() if uuid}
    if pinned:
        pins = ", ".join(f"{worker} {uuid}" for worker, uuid in sorted(pinned.items()))
        notes.append(f"pytest-xdist: each worker saw and metered only its own GPU: {pins}")
    workers = max((int(r.environment.get("xdist_workers") or 1) for r in records), default=1)
    if gpus and workers > gpus:
        notes.append(
            f"warning: {workers} pytest-xdist workers shared {gpus} GPU(s): a GPU's energy includes every worker "
            "on it and is not attributable per benchmark"
        )
    if workers > 1 and any(r.headline_scope() == "cpu" for r in records):
        notes.append(
            f"warning: {workers} pytest-xdist workers ran at once without GPUs: CPU energy is machine-wide and not "
            "attributable per worker, so parallel CPU figures include each other's load; run without -n to "
            "compare them"
        )
    return notes


class WorkerPlugin:
    """On a worker: sends each test's finished records to the controller with the test's teardown report."""

    def __init__(self, config: pytest.Config, energy: EnergySession) -> None:
        self.energy = energy
        self.worker = str(config.workerinput["workerid"])  # type: ignore[attr-defined]
        self.workers = int(config.workerinput.get("workercount", 1))  # type: ignore[attr-defined]
        self._sent = 0

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report: pytest.TestReport = yield
        if call.when == "teardown" and len(self.energy.records) > self._sent:
            fresh = self.energy.records[self._sent :]
            self._sent = len(self.energy.records)
            setattr(report, RECORDS_ATTR, [self._serialise(r) for r in fresh])
        return report

    def _serialise(self, record: Record) -> str:
        data = record.to_dict()
        data["environment"] = {**data["environment"], "xdist_worker": self.worker, "xdist_workers": self.workers}
        return json.dumps(data, sort_keys=True, default=str)


def pin_worker(config: pytest.Config, energy: EnergySession) -> str | None:
    """Show this worker only its GPU and meter ordinal 0 (that GPU); returns the GPU's UUID, None if unpinned."""
    uuid = config.workerinput.get(GPU_KEY)  # type: ignore[attr-defined]
    if not uuid:
        return None
    os.environ["CUDA_VISIBLE_DEVICES"] = uuid
    worker = config.workerinput["workerid"]  # type: ignore[attr-defined]
    sources = {**energy.settings.sources, "gpus": f"pytest-xdist worker {worker} pinned to {uuid}"}
    energy.settings = energy.settings._replace(gpus=(0,), sources=sources)
    if _cuda_started():
        config.issue_config_time_warning(
            pytest.PytestConfigWarning(
                f"aienergyscore: CUDA was initialised before pytest-xdist worker {worker} could be pinned to {uuid}; "
                "it may use other GPUs than the one it meters (do not start CUDA in conftest imports)"
            ),
            stacklevel=2,
        )
    return str(uuid)


def _cuda_started() -> bool:
    torch = sys.modules.get("torch")
    try:
        return bool(torch is not None and torch.cuda.is_initialized())
    except Exception:
        return False


def register(config: pytest.Config, energy: EnergySession) -> None:
    """Install the worker or controller side; called from the plugin's pytest_configure in distributed sessions."""
    if hasattr(config, "workerinput"):
        energy.is_worker = True
        shared = config.workerinput.get(SESSION_DIR_KEY)
        if shared:
            energy.share_session_dir(Path(shared))
        if not energy.settings.disabled:
            pin_worker(config, energy)
        config.pluginmanager.register(WorkerPlugin(config, energy), PLUGIN_NAME)
    else:
        config.pluginmanager.register(ControllerPlugin(config, energy), PLUGIN_NAME)
