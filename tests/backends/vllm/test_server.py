"""Where the server runs: this machine or another, and here, its listening process, its children and their GPUs.
Real listening processes; NVML is the fake of its interface (tests/support/fake_pynvml.py), since this machine has
no GPU; tests/end_to_end/test_gpu.py runs the real one."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_aienergyscore.backends.vllm.endpoint import parse_endpoint
from pytest_aienergyscore.backends.vllm.server import is_local_host, locate_server, server_pids
from tests.support.fake_pynvml import NVML_ERROR_NOT_SUPPORTED, FakeGpu, FakeProcess, make_gpus, make_pynvml
from tests.support.servers import free_port


def test_loopback_is_local_and_a_documentation_address_is_not() -> None:
    assert is_local_host("127.0.0.1") and is_local_host("localhost") and is_local_host("::1")
    assert not is_local_host("192.0.2.1")  # TEST-NET-1, never an address of this machine


# a real local server: a process listening on 127.0.0.1 that has started a child, as vLLM starts its workers
LISTENER = """
import socket, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
server = socket.socket(socket.AF_INET6 if sys.argv[1] == "::1" else socket.AF_INET)
server.bind((sys.argv[1], 0))
server.listen()
print(server.getsockname()[1], child.pid, flush=True)
time.sleep(600)
"""


@contextlib.contextmanager
def listener(host: str = "127.0.0.1") -> Iterator[tuple[int, int, int]]:
    """(port, pid, child pid) of a real listening process; both stopped by their pids."""
    process = subprocess.Popen([sys.executable, "-c", LISTENER, host], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    child = 0
    try:
        port, child = map(int, process.stdout.readline().split())
        yield port, process.pid, child
    finally:
        if child:
            os.kill(child, signal.SIGTERM)
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_the_local_servers_pids_are_the_listening_process_and_its_children(host: str) -> None:
    with listener() as (port, pid, child):
        pids, how = server_pids(parse_endpoint(f"http://{host}:{port}/v1"))
    assert pids == tuple(sorted((pid, child)))
    assert how == f"listening on port {port}: pid {pid}"


def test_a_listener_on_ipv6_loopback_is_found_too() -> None:
    with listener("::1") as (port, pid, child):
        pids, _ = server_pids(parse_endpoint(f"http://[::1]:{port}/v1"))
    assert pids == tuple(sorted((pid, child)))


def test_a_port_nobody_listens_on_has_no_server_pids() -> None:
    port = free_port()
    pids, how = server_pids(parse_endpoint(f"http://127.0.0.1:{port}/v1"))
    assert pids is None
    assert how == f"the process serving port {port} here is unknown: no listening socket was found"
    place = locate_server(parse_endpoint(f"http://127.0.0.1:{port}/v1"), lambda: pytest.fail("no NVML"))
    assert place.gpus is None and place.note == f"{how}; the metered GPUs were not checked against the server's"


def started_nvml(gpus: list[FakeGpu]) -> Any:
    nvml = make_pynvml(gpus)
    nvml.nvmlInit()
    return nvml


def test_a_local_server_runs_on_the_gpus_listing_its_pids_or_its_childrens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    gpus = make_gpus(3)
    with listener() as (port, _, child):
        gpus[0].processes = [FakeProcess(os.getpid())]  # someone else: this test process
        gpus[2].processes = [FakeProcess(child)]  # the server's worker
        place = locate_server(parse_endpoint(f"http://127.0.0.1:{port}"), lambda: started_nvml(gpus))
    assert place.gpus == [{"cuda": 2, "uuid": gpus[2].uuid}]
    assert child in (place.pids or ()) and place.note is None


def test_a_local_server_on_no_gpu_is_recorded_as_such_and_says_who_holds_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    gpus = make_gpus(2)
    gpus[1].processes = [FakeProcess(os.getpid())]
    with listener() as (port, pid, child):
        endpoint = parse_endpoint(f"http://127.0.0.1:{port}")
        place = locate_server(endpoint, lambda: started_nvml(gpus))
    assert place.gpus == [] and place.pids == tuple(sorted((pid, child)))
    assert place.note == (
        f"the server at {endpoint} (pids {', '.join(map(str, sorted((pid, child))))}) holds no GPU; "
        "GPUs cuda:1 are held by other processes"
    )


def test_pids_of_another_pid_namespace_leave_the_servers_gpus_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    gpus = make_gpus(1)
    gpus[0].processes = [FakeProcess(2**22 + 1)]  # above any pid_max: the host's pid seen from a container
    with listener() as (port, _, _):
        place = locate_server(parse_endpoint(f"http://127.0.0.1:{port}"), lambda: started_nvml(gpus))
    assert place.gpus is None
    assert place.note == (
        "the server's GPUs cannot be told: NVML lists pids that are no process here (4194305: another PID namespace)"
    )


def test_a_gpu_that_cannot_list_its_processes_is_never_taken_for_a_free_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    gpus = make_gpus(2)
    gpus[1].processes_error = NVML_ERROR_NOT_SUPPORTED
    with listener() as (port, pid, _):
        endpoint = parse_endpoint(f"http://127.0.0.1:{port}")
        unknown = locate_server(endpoint, lambda: started_nvml(gpus))
        gpus[0].processes = [FakeProcess(pid)]
        partial = locate_server(endpoint, lambda: started_nvml(gpus))
    cannot = (
        "NVML cannot list the processes of cuda:1: NVML cannot list compute processes: Not Supported; "
        "NVML cannot list graphics processes: Not Supported"
    )
    assert unknown.gpus is None and unknown.note == f"the server's GPUs cannot be told: {cannot}"
    assert partial.gpus == [{"cuda": 0, "uuid": gpus[0].uuid}]
    assert partial.note == f"it may hold more: {cannot}"
