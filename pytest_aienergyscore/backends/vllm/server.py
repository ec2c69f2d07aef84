"""Where the server runs: on this machine or another, and if here, which processes and which GPUs are its.

A local meter only measures the server's work when the server runs here, and the one-GPU rule and the metered GPUs
must be the server's own, not whichever ``--energy-gpus`` names. So the server's listening process and its children
are found from the endpoint's port, and its GPUs from NVML's running processes. Every answer says where it came
from, and "cannot be told" is kept apart from "holds no GPU", because the runner treats them differently.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

from pytest_aienergyscore.backends.vllm.endpoint import Endpoint


def is_local_host(host: str) -> bool:
    """Whether the server runs on this machine, so that its GPUs are the local ones given with --energy-gpus."""
    if host.lower() == "localhost":
        return True
    addresses = _host_addresses(host)
    if not addresses:  # a name that does not resolve is no address of this machine
        return False
    local = _local_addresses()
    return any(ipaddress.ip_address(a).is_loopback or a in local for a in addresses)


def _local_addresses() -> set[str]:
    import psutil

    return {
        str(addr.address).split("%")[0]
        for addrs in psutil.net_if_addrs().values()
        for addr in addrs
        if addr.family in (socket.AF_INET, socket.AF_INET6)
    }


def _host_addresses(host: str) -> set[str]:
    """The addresses a host name resolves to, without an IPv6 zone; none when it does not resolve."""
    try:
        return {str(info[4][0]).split("%")[0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return set()


@dataclass(frozen=True)
class ServerPlace:
    """The processes of a local server and the GPUs they hold, for the record and the one-GPU rule.

    ``gpus`` is a list of ``{"cuda": ordinal or None, "uuid": ...}`` (empty: the server holds no GPU), or None when
    that cannot be told; ``how`` says where the answer came from, ``note`` what the record should say about it.
    """

    pids: tuple[int, ...] | None
    gpus: list[dict[str, Any]] | None
    how: str
    note: str | None = None


def server_pids(endpoint: Endpoint) -> tuple[tuple[int, ...] | None, str]:
    """The pids of the process listening on the endpoint's port here, and of all its children (vLLM runs the model in
    child processes); None, with the reason, when no listener is found or its owner cannot be seen."""
    import psutil

    wanted = _host_addresses(endpoint.host)
    owners: set[int] = set()
    hidden = False
    try:
        sockets = psutil.net_connections(kind="tcp")
    except psutil.Error as err:  # macOS lists other processes' sockets to root only
        return None, f"the process serving port {endpoint.port} here is unknown: the sockets cannot be listed ({err})"
    for conn in sockets:
        if conn.status != psutil.CONN_LISTEN or not conn.laddr or conn.laddr.port != endpoint.port:
            continue
        if not _listens_on(str(conn.laddr.ip), wanted):
            continue
        if conn.pid is None:
            hidden = True  # another user's process: its file descriptors cannot be read
        else:
            owners.add(conn.pid)
    if not owners:
        why = "its owner cannot be seen (another user's process?)" if hidden else "no listening socket was found"
        return None, f"the process serving port {endpoint.port} here is unknown: {why}"
    pids = set(owners)
    for pid in owners:
        with contextlib.suppress(psutil.Error):
            pids.update(child.pid for child in psutil.Process(pid).children(recursive=True))
    return tuple(sorted(pids)), f"listening on port {endpoint.port}: pid {', '.join(map(str, sorted(owners)))}"


def _listens_on(ip: str, wanted: set[str]) -> bool:
    """A listener on the wildcard address takes every local address; an IPv4-mapped IPv6 one its IPv4 address."""
    ip = ip.split("%")[0]
    return ip in ("", "0.0.0.0", "::") or ip in wanted or ip.removeprefix("::ffff:") in wanted


def locate_server(endpoint: Endpoint, load_nvml: Any = None) -> ServerPlace:
    """Which GPUs a local server runs on: those whose NVML running processes include one of the server's pids."""
    from pytest_aienergyscore.meters import MeterUnavailable
    from pytest_aienergyscore.meters.gpu_processes import foreign_pids, gpu_pids, gpus_held_by
    from pytest_aienergyscore.meters.nvml import load_pynvml

    pids, how = server_pids(endpoint)
    if pids is None:
        return ServerPlace(None, None, how, f"{how}; the metered GPUs were not checked against the server's")
    try:
        nvml = (load_nvml or load_pynvml)()
    except MeterUnavailable as err:  # no NVIDIA driver: the server holds no NVIDIA GPU
        return ServerPlace(pids, [], f"{how}; no GPU process list here: {err}")
    try:
        holders = gpu_pids(nvml)
    except nvml.NVMLError as err:
        why = f"NVML failed to list the GPUs: {err}"
        return ServerPlace(pids, None, f"{how}; {why}", f"the server's GPUs cannot be told: {why}")
    held = gpus_held_by(holders, pids)
    unreadable = [f"{g.device}: {g.unreadable}" for g in holders if g.unreadable]
    if held:
        gpus = [{"cuda": g.ordinal, "uuid": g.uuid} for g in held]
        partial = f"it may hold more: NVML cannot list the processes of {'; '.join(unreadable)}" if unreadable else None
        return ServerPlace(pids, gpus, f"{how}; its GPUs from NVML's running processes", partial)
    unknown = sorted(foreign_pids(holders))
    if unknown or unreadable:
        why = (
            f"NVML lists pids that are no process here ({', '.join(map(str, unknown))}: another PID namespace)"
            if unknown
            else f"NVML cannot list the processes of {'; '.join(unreadable)}"
        )
        return ServerPlace(pids, None, f"{how}; {why}", f"the server's GPUs cannot be told: {why}")
    others = [g.device for g in holders if g.pids]
    busy = f"; GPUs {', '.join(others)} are held by other processes" if others else ""
    note = f"the server at {endpoint} (pids {', '.join(map(str, pids))}) holds no GPU{busy}"
    return ServerPlace(pids, [], f"{how}; NVML's running processes include none of its pids", note)
