"""Which processes hold each GPU, against the fake pynvml (tests/fake_pynvml.py); tests/test_gpu.py runs a real one."""

from __future__ import annotations

import os
import sys
from types import ModuleType
from typing import Any

import pytest

from pytest_aienergyscore.meters.gpu_processes import (
    foreign_pids,
    gpu_pids,
    gpus_held_by,
    metered_gpus_differ,
)
from pytest_aienergyscore.meters.nvml import NvmlMeter
from tests.support.fake_pynvml import NVML_ERROR_NOT_SUPPORTED, FakeGpu, FakeProcess, make_gpus, make_pynvml

NEVER_A_PID = 2**22 + 1  # above the largest pid_max Linux allows (2**22): no process can have it


@pytest.fixture(autouse=True)
def no_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide torch: once a GPU test has started CUDA in this process, ordinals would be mapped through it."""
    monkeypatch.setitem(sys.modules, "torch", None)


def started(gpus: list[FakeGpu], **kwargs: Any) -> ModuleType:
    nvml = make_pynvml(gpus, **kwargs)
    nvml.nvmlInit()
    return nvml


def three_gpus() -> list[FakeGpu]:
    gpus = make_gpus(3)
    gpus[0].processes = [FakeProcess(100, 2 << 30), FakeProcess(101, None, graphics=True)]
    gpus[2].processes = [FakeProcess(100, 1 << 30), FakeProcess(300, 5 << 30)]
    return gpus


def test_each_gpu_lists_its_compute_and_graphics_pids_by_ordinal_and_uuid() -> None:
    gpus = three_gpus()
    found = gpu_pids(started(gpus), env={})
    assert [(g.nvml_index, g.ordinal, g.uuid) for g in found] == [(i, i, gpus[i].uuid) for i in range(3)]
    assert [g.pids for g in found] == [(100, 101), (), (100, 300)]
    assert found[0].memory == {100: 2 << 30, 101: None}  # None: the driver could not tell (as pynvml says)
    assert all(g.unreadable is None for g in found)
    assert found[2].to_dict() == {"cuda": 2, "uuid": gpus[2].uuid, "pids": [100, 300], "unreadable": None}


def test_a_process_in_both_lists_counts_once_with_its_memory() -> None:
    gpus = make_gpus(1)
    gpus[0].processes = [FakeProcess(7, 3 << 30), FakeProcess(7, None, graphics=True)]
    [gpu] = gpu_pids(started(gpus), env={})
    assert gpu.pids == (7,) and gpu.memory == {7: 3 << 30}


def test_ordinals_follow_cuda_visible_devices_and_hidden_gpus_have_none() -> None:
    gpus = three_gpus()
    found = gpu_pids(started(gpus), env={"CUDA_VISIBLE_DEVICES": "2,0"})
    assert [g.ordinal for g in found] == [1, None, 0]
    assert [g.device for g in found] == ["cuda:1", gpus[1].uuid, "cuda:0"]


def test_ordinals_are_the_ones_the_nvml_meter_meters() -> None:
    gpus = three_gpus()
    env = {"CUDA_VISIBLE_DEVICES": f"{gpus[2].uuid[4:12]},1"}  # a UUID prefix, then an index
    nvml = started(gpus)
    meter = NvmlMeter((0, 1), nvml=nvml, env=env)
    metered = {fact["device"]: fact["uuid"] for fact in meter.device_facts()}
    found = {g.device: g.uuid for g in gpu_pids(nvml, env=env) if g.ordinal is not None}
    assert found == metered == {"cuda:0": gpus[2].uuid, "cuda:1": gpus[1].uuid}


def test_uuids_given_as_bytes_by_old_pynvml_are_text() -> None:
    gpus = three_gpus()
    assert [g.uuid for g in gpu_pids(started(gpus, strings_as_bytes=True), env={})] == [g.uuid for g in gpus]


def test_a_gpu_that_cannot_list_processes_says_why_and_the_others_are_still_read() -> None:
    gpus = three_gpus()
    gpus[0].processes_error = NVML_ERROR_NOT_SUPPORTED
    found = gpu_pids(started(gpus), env={})
    assert found[0].pids == ()
    assert found[0].unreadable == (
        "NVML cannot list compute processes: Not Supported; NVML cannot list graphics processes: Not Supported"
    )
    assert found[2].pids == (100, 300) and found[2].unreadable is None


def test_a_pynvml_without_the_process_queries_says_so() -> None:
    nvml = started(make_gpus(1))
    del nvml.nvmlDeviceGetGraphicsRunningProcesses
    [gpu] = gpu_pids(nvml, env={})
    assert gpu.unreadable == "this pynvml has no nvmlDeviceGetGraphicsRunningProcesses"


def test_the_gpus_held_by_some_pids_are_those_listing_any_of_them() -> None:
    found = gpu_pids(started(three_gpus()), env={})
    assert [g.nvml_index for g in gpus_held_by(found, [100])] == [0, 2]
    assert [g.nvml_index for g in gpus_held_by(found, {300, 999})] == [2]
    assert gpus_held_by(found, [999]) == []


def test_pids_of_another_pid_namespace_are_told_apart_from_this_machines() -> None:
    gpus = make_gpus(2)
    gpus[0].processes = [FakeProcess(os.getpid())]
    gpus[1].processes = [FakeProcess(NEVER_A_PID)]
    found = gpu_pids(started(gpus), env={})
    assert foreign_pids(found) == {NEVER_A_PID}  # checked against this machine's real process table
    assert foreign_pids(found[:1]) == set()


# -- does the meter meter the GPUs a server runs on? ------------------------------------------------------------------
def nvml_info(*ordinals: int, name: str = "nvml", uuids: bool = True) -> dict[str, Any]:
    devices = [{"device": f"cuda:{o}", "scope": "gpu", "uuid": f"GPU-{o}" if uuids else None} for o in ordinals]
    return {"name": name, "devices": devices}


def used(*ordinals: int | None) -> list[dict[str, Any]]:
    return [{"cuda": o, "uuid": f"GPU-{o}" if o is not None else "GPU-hidden"} for o in ordinals]


def test_metering_the_servers_gpus_exactly_is_no_problem() -> None:
    assert metered_gpus_differ(used(1, 0), nvml_info(0, 1), "the server") is None
    assert metered_gpus_differ(used(0), nvml_info(0, name="nvml-power"), "the server") is None
    assert metered_gpus_differ(used(0, 1), nvml_info(0, 1, uuids=False), "the server") is None


@pytest.mark.parametrize(
    ("server", "metered", "line"),
    [
        ((0, 1), (0,), "S runs on GPUs [0, 1]; --energy-gpus meters [0]; pass --energy-gpus 0,1"),
        ((1,), (0,), "S runs on GPUs [1]; --energy-gpus meters [0]; pass --energy-gpus 1"),
        ((0,), (0, 1), "S runs on GPUs [0]; --energy-gpus meters [0, 1]; pass --energy-gpus 0"),
        (
            (0, None),
            (0,),
            "S runs on GPUs [0, GPU-hidden]; --energy-gpus meters [0]; make GPU-hidden visible to this process "
            "(CUDA_VISIBLE_DEVICES), then pass them to --energy-gpus",
        ),
    ],
)
def test_metering_other_gpus_than_the_servers_is_one_line_saying_what_to_pass(
    server: tuple[int | None, ...], metered: tuple[int, ...], line: str
) -> None:
    assert metered_gpus_differ(used(*server), nvml_info(*metered), "S") == line


def test_a_meter_that_reads_no_local_gpu_through_nvml_is_not_compared() -> None:
    for name in ("estimate", "rapl", "dcgm"):
        assert metered_gpus_differ(used(0, 1), nvml_info(0, name=name), "S") is None
