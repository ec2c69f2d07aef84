"""DcgmMeter against real HTTP servers on 127.0.0.1 that play dcgm-exporters and a Prometheus server.

The servers serve counters that the tests advance; the meter reads them over real HTTP and parses the text with
prometheus-client's parser, so everything but the GPUs themselves is the real path.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from pytest_aienergyscore.meters import MeterUnavailable, create_meter
from pytest_aienergyscore.meters.dcgm.meter import DcgmMeter, increase
from pytest_aienergyscore.meters.dcgm.sources import METRIC, make_source, public_url
from pytest_aienergyscore.records.figures import Measurement

H100 = "NVIDIA H100 80GB HBM3"

Reply = tuple[int, str, bytes]


# -- the fake servers ---------------------------------------------------------------------------------------------
@dataclass
class FakeGpu:
    host: str
    index: int
    uuid: str
    energy_mj: int = 1_000_000_000
    model: str = H100
    labels: dict[str, str] = field(default_factory=dict)

    def label_text(self) -> str:
        labels = {
            "gpu": str(self.index),
            "UUID": self.uuid,
            "pci_bus_id": f"00000000:{self.index + 7:02X}:00.0",
            "device": f"nvidia{self.index}",
            "modelName": self.model,
            "Hostname": self.host,
            "DCGM_FI_DRIVER_VERSION": "550.54.15",
            **self.labels,
        }
        return ",".join(f'{k}="{v}"' for k, v in labels.items())


def gpu(host: str, index: int, **kwargs: Any) -> FakeGpu:
    serial = f"{zlib.crc32(host.encode()):08x}"
    return FakeGpu(host, index, f"GPU-{serial}-0000-4000-8000-{index:012x}", **kwargs)


class Exporter:
    """A dcgm-exporter stand-in: Prometheus text for GPUs whose counters the test sets (or that step per scrape)."""

    def __init__(self, gpus: list[FakeGpu]) -> None:
        self.gpus = gpus
        self.sample_time: float | None = None  # publish this timestamp (s) with each sample when set
        self.step_per_scrape: dict[str, int] = {}
        self.reply: Reply | None = None  # serve this instead (HTML, errors...)
        self.with_metric = True
        self.credentials: tuple[str, str] | None = None
        self.token: str | None = None
        self.served: list[dict[str, int]] = []

    def __call__(self, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Reply:
        if not self._authorised(query, headers):
            return 401, "text/plain", b"unauthorised\n"
        if self.reply is not None:
            return self.reply
        if path != "/metrics":
            return 404, "text/plain", b"404 page not found\n"
        for g in self.gpus:
            g.energy_mj += self.step_per_scrape.get(g.uuid, 0)
        self.served.append({g.uuid: g.energy_mj for g in self.gpus})
        return 200, "text/plain; version=0.0.4; charset=utf-8", self.text().encode()

    def _authorised(self, query: dict[str, list[str]], headers: dict[str, str]) -> bool:
        if self.token is not None and query.get("token") != [self.token]:
            return False
        if self.credentials is None:
            return True
        expected = base64.b64encode(":".join(self.credentials).encode()).decode()
        return headers.get("authorization") == f"Basic {expected}"

    def text(self) -> str:
        lines = [
            "# HELP DCGM_FI_DEV_GPU_TEMP GPU temperature (in C).",
            "# TYPE DCGM_FI_DEV_GPU_TEMP gauge",
            *(f"DCGM_FI_DEV_GPU_TEMP{{{g.label_text()}}} 41" for g in self.gpus),
        ]
        if self.with_metric:
            stamp = "" if self.sample_time is None else f" {int(self.sample_time * 1000)}"
            lines += [
                f"# HELP {METRIC} Total energy consumption since boot (in mJ).",
                f"# TYPE {METRIC} counter",
                *(f"{METRIC}{{{g.label_text()}}} {g.energy_mj}{stamp}" for g in self.gpus),
            ]
        return "\n".join(lines) + "\n"


class Prometheus:
    """A Prometheus API stand-in: keeps scrapes of exporters' GPUs and answers range-vector queries from them."""

    def __init__(self) -> None:
        self.scrapes: list[tuple[float, list[FakeGpu]]] = []
        self.queries: list[str] = []
        self.error: str | None = None

    def scrape(self, gpus: list[FakeGpu], at: float) -> None:
        copies = [FakeGpu(g.host, g.index, g.uuid, g.energy_mj, g.model, dict(g.labels)) for g in gpus]
        self.scrapes.append((at, copies))

    def __call__(self, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Reply:
        if path != "/api/v1/query":
            return 404, "text/plain", b"404 page not found\n"
        promql = query["query"][0]
        self.queries.append(promql)
        if self.error is not None:
            body = {"status": "error", "errorType": "bad_data", "error": self.error}
            return 400, "application/json", json.dumps(body).encode()
        result = [{"metric": labels, "values": values} for labels, values in self._series().values()]
        body = {"status": "success", "data": {"resultType": "matrix", "result": result}}
        return 200, "application/json", json.dumps(body).encode()

    def _series(self) -> dict[str, tuple[dict[str, str], list[list[object]]]]:
        series: dict[str, tuple[dict[str, str], list[list[object]]]] = {}
        for at, gpus in self.scrapes:
            for g in gpus:
                labels = {"__name__": METRIC, "gpu": str(g.index), "UUID": g.uuid, "Hostname": g.host}
                labels |= {"modelName": g.model, "instance": f"{g.host}:9400", "job": "dcgm-exporter"}
                series.setdefault(g.uuid, (labels, []))[1].append([at, str(g.energy_mj)])
        return series


class LocalServer:
    """A real HTTP server on 127.0.0.1 (port chosen by the OS), answering through ``app``, in a thread."""

    def __init__(self, app: Callable[[str, dict[str, list[str]], dict[str, str]], Reply]) -> None:
        handler = _handler_for(app)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def url(self, path: str = "/metrics", auth: str = "") -> str:
        return f"http://{auth}127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        """Idempotent, so a test may stop a server early (an exporter going away) and the fixture again."""
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(timeout=5)


def _handler_for(app: Callable[[str, dict[str, list[str]], dict[str, str]], Reply]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, content_type, body = app(parts.path, parse_qs(parts.query), headers)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # keep test output clean
            pass

    return Handler


@pytest.fixture
def serve() -> Iterator[Callable[..., LocalServer]]:
    """Start servers for a test; every one is stopped when the test ends."""
    servers: list[LocalServer] = []

    def start(app: Callable[[str, dict[str, list[str]], dict[str, str]], Reply]) -> LocalServer:
        servers.append(LocalServer(app))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def two_hosts(serve: Callable[..., LocalServer]) -> tuple[Exporter, Exporter, LocalServer, LocalServer]:
    """node-1 with two GPUs and node-2 with one, each behind its own exporter."""
    node1 = Exporter([gpu("node-1", 0), gpu("node-1", 1)])
    node2 = Exporter([gpu("node-2", 0, model="NVIDIA A100-SXM4-80GB")])
    return node1, node2, serve(node1), serve(node2)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/metrics"


def by_device(measurement: Measurement) -> dict[str, float]:
    return {d.device: d.joules for d in measurement.devices}


def mj_exact(joules: dict[str, float]) -> Any:
    """Exact to far below the counter's 1 mJ step: window edges subtract two float readings."""
    return pytest.approx(joules, rel=0, abs=1e-9)


# -- exact energy, per device, over real HTTP ------------------------------------------------------------------------
def test_two_windows_give_exact_joules_per_gpu_on_two_hosts(two_hosts) -> None:
    node1, node2, server1, server2 = two_hosts
    meter = DcgmMeter([server1.url(), server2.url()])
    assert meter.device_scopes() == {"node-1/gpu0": "gpu", "node-1/gpu1": "gpu", "node-2/gpu0": "gpu"}

    meter.begin_window("prefill")
    node1.gpus[0].energy_mj += 123_456_789
    node1.gpus[1].energy_mj += 1_500
    node2.gpus[0].energy_mj += 7
    first = meter.end_window("prefill")
    meter.begin_window("decode")
    node1.gpus[0].energy_mj += 250_000
    node2.gpus[0].energy_mj += 3_000_001
    second = meter.end_window("decode")

    assert by_device(first) == mj_exact({"node-1/gpu0": 123_456.789, "node-1/gpu1": 1.5, "node-2/gpu0": 0.007})
    assert by_device(second) == mj_exact({"node-1/gpu0": 250.0, "node-1/gpu1": 0.0, "node-2/gpu0": 3_000.001})
    assert first.valid and second.valid, (first.warnings, second.warnings)
    assert (first.meter, first.kind) == ("dcgm", "measured")
    assert all((d.scope, d.kind, d.meter) == ("gpu", "measured", "dcgm") for d in first.devices)


def test_device_facts_name_host_gpu_uuid_model_and_source(two_hosts) -> None:
    node1, _, server1, server2 = two_hosts
    meter = DcgmMeter([server1.url(), server2.url()])
    facts = {f["device"]: f for f in meter.device_facts()}
    assert facts["node-1/gpu1"]["host"] == "node-1"
    assert facts["node-1/gpu1"]["gpu"] == "1"
    assert facts["node-1/gpu1"]["uuid"] == node1.gpus[1].uuid
    assert facts["node-1/gpu1"]["name"] == H100
    assert facts["node-2/gpu0"]["name"] == "NVIDIA A100-SXM4-80GB"
    assert facts["node-2/gpu0"]["source"] == server2.url()
    assert facts["node-2/gpu0"]["source_kind"] == "exporter"
    assert facts["node-1/gpu0"]["driver"] == "550.54.15"
    assert meter.hosts() == ["node-1", "node-2"]
    assert "3 GPU(s) on node-1, node-2 from 2 exporter URL(s)" in meter.summary()


def test_a_counter_beyond_float_precision_stays_exact(serve) -> None:
    exporter = Exporter([gpu("node-1", 0, energy_mj=2**60)])
    meter = DcgmMeter([serve(exporter).url()])
    meter.begin_window("w")
    exporter.gpus[0].energy_mj += 1
    assert by_device(meter.end_window("w")) == mj_exact({"node-1/gpu0": 0.001})


def test_each_read_is_logged_with_its_time_value_and_age(serve) -> None:
    exporter = Exporter([gpu("node-1", 0)])
    exporter.sample_time = time.time() - 2.0
    meter = DcgmMeter([serve(exporter).url()])
    meter.begin_window("w")
    exporter.gpus[0].energy_mj += 10
    meter.end_window("w")
    reads = meter.info().details["reads"]
    assert len(reads) == 3  # set-up, begin, end
    last = reads[-1]
    assert abs(last["wall"] - time.time()) < 5
    sample = last["devices"]["node-1/gpu0"]
    assert sample["counter_mj"] == exporter.gpus[0].energy_mj
    assert sample["sample_time"] == pytest.approx(exporter.sample_time, abs=0.001)
    assert 2.0 <= sample["age_s"] < 10.0
    assert sample["problem"] is None


# -- selecting GPUs -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        (None, ["node-1/gpu0", "node-1/gpu1", "node-2/gpu0"]),
        ("uuid:node-1:1", ["node-1/gpu1"]),
        ("0", ["node-1/gpu0", "node-2/gpu0"]),
        ("node-1:1,node-2:0", ["node-1/gpu1", "node-2/gpu0"]),
        ("modelName=NVIDIA A100-SXM4-80GB", ["node-2/gpu0"]),
        ("pod=vllm-0", ["node-1/gpu0", "node-1/gpu1"]),
        ("Hostname=node-2,node-1:0", ["node-1/gpu0", "node-2/gpu0"]),
    ],
)
def test_selector_by_uuid_index_host_index_or_label(two_hosts, selector: str | None, expected: list[str]) -> None:
    node1, node2, server1, server2 = two_hosts
    for g in node1.gpus:
        g.labels["pod"] = "vllm-0"
    if selector and selector.startswith("uuid:"):
        selector = node1.gpus[1].uuid.lower()  # UUIDs match whatever their case
    meter = DcgmMeter([server1.url(), server2.url()], selector)
    assert sorted(meter.device_scopes()) == expected
    meter.begin_window("w")
    for g in node1.gpus + node2.gpus:
        g.energy_mj += 1_000
    assert by_device(meter.end_window("w")) == mj_exact(dict.fromkeys(expected, 1.0))


def test_a_selector_term_matching_no_gpu_is_an_error_listing_what_is_there(two_hosts) -> None:
    _, _, server1, server2 = two_hosts
    with pytest.raises(MeterUnavailable, match="'node-3:0' matches no GPU") as err:
        DcgmMeter([server1.url(), server2.url()], "node-1:0,node-3:0")
    assert "node-1:0 (GPU-" in str(err.value) and "node-2:0 (GPU-" in str(err.value)


def test_a_malformed_selector_term_is_an_error_before_any_url_is_read() -> None:
    with pytest.raises(MeterUnavailable, match=r"^--energy-dcgm-gpus: 'node-1' is no GPU UUID \(GPU-\.\.\.\), index"):
        DcgmMeter([closed_port_url()], "0,node-1")


def test_a_host_named_gpu_something_selects_by_host_and_index_not_by_uuid(serve) -> None:
    exporter = Exporter([gpu("gpu-node-1", 0), gpu("gpu-node-1", 1)])
    meter = DcgmMeter([serve(exporter).url()], "gpu-node-1:1")
    assert meter.selector.terms[0].kind == "index"
    assert sorted(meter.device_scopes()) == ["gpu-node-1/gpu1"]


def test_a_promql_selector_needs_a_prometheus_url(two_hosts) -> None:
    _, _, server1, _ = two_hosts
    with pytest.raises(MeterUnavailable, match="works with Prometheus URLs only"):
        DcgmMeter([server1.url()], '{Hostname="node-1"}')


# -- resets, staleness, missing counters ----------------------------------------------------------------------------
@pytest.mark.parametrize(("before", "after"), [(5_000_000, 1_000), (2**63 - 1_000, 500)])
def test_a_counter_that_goes_down_invalidates_the_window(serve, before: int, after: int) -> None:
    exporter = Exporter([gpu("node-1", 0, energy_mj=before), gpu("node-1", 1)])
    meter = DcgmMeter([serve(exporter).url()])
    meter.begin_window("across")
    exporter.gpus[0].energy_mj = after  # driver reload, GPU reset or a new DCGM: the counter restarted
    exporter.gpus[1].energy_mj += 2_000
    m = meter.end_window("across")
    assert not m.valid
    assert any("node-1/gpu0: the counter went down during the window" in w for w in m.warnings), m.warnings
    assert any("reset during the window" in w for w in m.warnings)
    assert all(d.joules >= 0 for d in m.devices)
    assert by_device(m)["node-1/gpu1"] == pytest.approx(2.0, abs=1e-9)

    meter.begin_window("after")  # a window after the reset is good again
    exporter.gpus[0].energy_mj += 4_000
    after_reset = meter.end_window("after")
    assert after_reset.valid, after_reset.warnings
    assert by_device(after_reset)["node-1/gpu0"] == pytest.approx(4.0, abs=1e-9)


def test_increase_counts_drops_as_restarts_from_zero() -> None:
    assert increase([10, 15, 3, 8]) == (5 + 3 + 5, 1)
    assert increase([7]) == (0, 0)


def test_a_sample_older_than_max_age_invalidates_the_window(serve) -> None:
    exporter = Exporter([gpu("node-1", 0)])
    exporter.sample_time = time.time() - 60.0
    meter = DcgmMeter([serve(exporter).url()], max_age_s=30.0)
    meter.begin_window("w")
    exporter.gpus[0].energy_mj += 1_000
    m = meter.end_window("w")
    assert not m.valid
    [stale] = [w for w in m.warnings if w.startswith("node-1/gpu0:")]
    assert "s old (over --energy-dcgm-max-age 30 s) at the window's begin" in stale


def test_a_fresh_timestamp_keeps_the_window_valid(serve) -> None:
    exporter = Exporter([gpu("node-1", 0)])
    exporter.sample_time = time.time()
    meter = DcgmMeter([serve(exporter).url()], max_age_s=30.0)
    meter.begin_window("w")
    exporter.gpus[0].energy_mj += 1_000
    exporter.sample_time = time.time()
    m = meter.end_window("w")
    assert m.valid, m.warnings
    assert by_device(m) == mj_exact({"node-1/gpu0": 1.0})


def test_a_frozen_counter_over_more_than_two_updates_invalidates_the_window(serve) -> None:
    exporter = Exporter([gpu("node-1", 0), gpu("node-1", 1)])
    meter = DcgmMeter([serve(exporter).url()], counter_period_s=0.05)
    meter.begin_window("w")
    exporter.gpus[1].energy_mj += 500  # the other GPU advances; gpu0's value stands still
    time.sleep(0.15)
    m = meter.end_window("w")
    assert not m.valid
    [frozen] = [w for w in m.warnings if "gpu0" in w]
    assert "node-1/gpu0: the counter did not advance in" in frozen and "served an old value" in frozen
    assert not any("gpu1" in w for w in m.warnings)


def test_a_counter_unchanged_for_longer_than_max_age_is_stale_even_in_a_short_window(serve) -> None:
    exporter = Exporter([gpu("node-1", 0)])
    meter = DcgmMeter([serve(exporter).url()], max_age_s=0.1, counter_period_s=60.0)
    time.sleep(0.2)  # the value has not moved since set-up
    meter.begin_window("w")
    exporter.gpus[0].energy_mj += 10
    m = meter.end_window("w")
    assert not m.valid
    assert any("the counter had not changed for" in w and "window's begin" in w for w in m.warnings), m.warnings


def test_a_gpu_gone_from_the_page_invalidates_the_window_never_a_silent_zero(serve) -> None:
    exporter = Exporter([gpu("node-1", 0), gpu("node-1", 1)])
    server = serve(exporter)
    meter = DcgmMeter([server.url()])
    meter.begin_window("w")
    gone = exporter.gpus.pop(1)
    m = meter.end_window("w")
    assert not m.valid
    assert any(f"node-1/gpu1: no longer published by {server.url()} at the window's end" in w for w in m.warnings)
    exporter.gpus.append(gone)


def test_an_exporter_that_stops_answering_invalidates_the_window(serve) -> None:
    exporter = Exporter([gpu("node-1", 0)])
    server = serve(exporter)
    meter = DcgmMeter([server.url()], timeout_s=2.0)
    meter.begin_window("w")
    server.stop()
    m = meter.end_window("w")
    assert not m.valid
    assert any("cannot be reached" in w and "window's end" in w for w in m.warnings), m.warnings
    assert by_device(m) == mj_exact({"node-1/gpu0": 0.0})


# -- bad input: each a clear error ----------------------------------------------------------------------------------
def test_an_unreachable_url_is_an_error() -> None:
    url = closed_port_url()
    with pytest.raises(MeterUnavailable, match=f"--energy-dcgm-url {url}: cannot be reached"):
        DcgmMeter([url], timeout_s=2.0)


def test_html_instead_of_prometheus_text_is_an_error(serve) -> None:
    exporter = Exporter([gpu("node-1", 0)])
    exporter.reply = (200, "text/html", b"<!DOCTYPE html><html><body>Grafana</body></html>")
    server = serve(exporter)
    with pytest.raises(MeterUnavailable, match="does not answer in Prometheus text format") as err:
        DcgmMeter([server.url()])
    assert server.url() in str(err.value) and "<!DOCTYPE html>" in str(err.value)


def test_a_page_without_the_energy_metric_is_an_error(serve) -> None:
    exporter = Exporter([gpu("node-1", 0)])
    exporter.with_metric = False
    with pytest.raises(MeterUnavailable, match=f"publishes no {METRIC} \\(1 other metric families"):
        DcgmMeter([serve(exporter).url()])


def test_an_http_error_is_an_error(serve) -> None:
    exporter = Exporter([gpu("node-1", 0)])
    exporter.reply = (503, "text/plain", b"busy")
    with pytest.raises(MeterUnavailable, match="HTTP 503"):
        DcgmMeter([serve(exporter).url()])


def test_two_urls_giving_the_same_gpu_are_refused(serve) -> None:
    shared = gpu("node-1", 0)
    server1 = serve(Exporter([shared]))
    server2 = serve(Exporter([shared]))
    with pytest.raises(MeterUnavailable, match="would count twice") as err:
        DcgmMeter([server1.url(), server2.url()])
    assert f"GPU {shared.uuid}" in str(err.value)
    assert f"by both {server1.url()} and {server2.url()}" in str(err.value)


def test_one_gpu_published_per_mig_instance_is_metered_once(serve) -> None:
    whole = gpu("node-1", 0)
    instances = [FakeGpu(whole.host, 0, whole.uuid, whole.energy_mj, labels={"GPU_I_ID": i}) for i in ("1", "2")]
    exporter = Exporter(instances)
    meter = DcgmMeter([serve(exporter).url()])
    assert list(meter.device_scopes()) == ["node-1/gpu0"]
    meter.begin_window("w")
    for instance in instances:
        instance.energy_mj += 5_000  # the counter is the whole GPU's, repeated on each instance's series
    assert by_device(meter.end_window("w")) == mj_exact({"node-1/gpu0": 5.0})


def test_one_source_giving_one_gpu_two_different_counters_is_refused(serve) -> None:
    first = gpu("node-1", 0)
    second = FakeGpu(first.host, 0, first.uuid, first.energy_mj + 1, labels={"job": "again"})
    server = serve(Exporter([first, second]))
    with pytest.raises(MeterUnavailable, match=r"published twice by .* \(two series differing in job\)"):
        DcgmMeter([server.url()])


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://node-1/metrics", "not an http(s) URL"),
        ("node-1:9400/metrics", "not an http(s) URL"),
        ("grafana+http://node-1:3000", "not an http(s) URL"),
    ],
)
def test_a_url_that_is_not_http_is_an_error(url: str, message: str) -> None:
    with pytest.raises(MeterUnavailable, match=re.escape(message)):
        DcgmMeter([url])


def test_no_url_is_an_error() -> None:
    with pytest.raises(MeterUnavailable, match="--energy-dcgm-url"):
        DcgmMeter([])


# -- credentials never leave the request ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "public"),
    [
        ("http://user:s3cret@node-1:9400/metrics?token=abc#x", "http://node-1:9400/metrics"),
        ("https://node-1:9400/metrics", "https://node-1:9400/metrics"),
        ("prometheus+https://u:p@prom.example/api/v1/query?x=1", "prometheus+https://prom.example/api/v1/query"),
        ("user:s3cret@node-1:9400/metrics?token=abc", "node-1:9400/metrics"),
    ],
)
def test_public_url_drops_user_password_and_query(url: str, public: str) -> None:
    assert public_url(url) == public


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://node-1:9400/metrics", "exporter"),
        ("http://node-1:9400/metrics/", "exporter"),
        ("http://prometheus:9090", "prometheus"),
        ("http://prometheus:9090/api/v1/query", "prometheus"),
        ("dcgm+http://node-1:9400/custom", "exporter"),
        ("prometheus+https://example.org/metrics", "prometheus"),
    ],
)
def test_the_kind_of_a_url_comes_from_its_path_or_scheme(url: str, kind: str) -> None:
    source = make_source(url)
    assert source.kind == kind
    assert source.request_url.startswith(("http://", "https://"))


def test_credentials_in_the_url_are_used_but_never_shown(serve) -> None:
    exporter = Exporter([gpu("node-1", 0)])
    exporter.credentials = ("alice", "s3cret-pw")
    exporter.token = "tok-123"
    server = serve(exporter)
    meter = DcgmMeter([server.url("/metrics?token=tok-123", auth="alice:s3cret-pw@")])
    meter.begin_window("w")
    exporter.gpus[0].energy_mj += 2_000
    assert by_device(meter.end_window("w")) == mj_exact({"node-1/gpu0": 2.0})
    shown = json.dumps([meter.info().to_dict(), meter.device_facts(), meter.summary()])
    assert "s3cret-pw" not in shown and "tok-123" not in shown and "alice" not in shown
    assert server.url() in shown

    with pytest.raises(MeterUnavailable, match="HTTP 401") as err:
        DcgmMeter([server.url("/metrics?token=tok-123", auth="alice:wrong-pw@")])
    assert "wrong-pw" not in str(err.value) and "tok-123" not in str(err.value)


# -- a Prometheus server as the source ------------------------------------------------------------------------------
def scraped(prometheus: Prometheus, gpus: list[FakeGpu], times: list[float]) -> None:
    for at in times:
        prometheus.scrape(gpus, at)


def test_prometheus_range_query_gives_exact_joules_ages_and_the_scrape_interval(serve) -> None:
    gpus = [gpu("node-1", 0), gpu("node-2", 0)]
    prometheus = Prometheus()
    now = time.time()
    scraped(prometheus, gpus, [now - 3.0, now - 2.0, now - 1.0])
    server = serve(prometheus)
    meter = DcgmMeter([server.url("")], '{Hostname=~"node-1|node-2", gpu="0"}')
    assert prometheus.queries[0] == f'{METRIC}{{Hostname=~"node-1|node-2", gpu="0"}}[300s]'
    assert meter.counter_period_s == pytest.approx(1.0)  # learned from the spacing of the scrapes
    assert meter.device_facts()[0]["source_kind"] == "prometheus"

    meter.begin_window("w")
    gpus[0].energy_mj += 60_000
    gpus[1].energy_mj += 1_234
    prometheus.scrape(gpus, time.time())
    m = meter.end_window("w")
    assert by_device(m) == mj_exact({"node-1/gpu0": 60.0, "node-2/gpu0": 1.234})
    assert m.valid, m.warnings
    last = meter.info().details["reads"][-1]["devices"]["node-1/gpu0"]
    assert 0.0 <= last["age_s"] < 5.0


def test_prometheus_sees_a_reset_between_reads_even_when_the_counter_climbed_back(serve) -> None:
    gpus = [gpu("node-1", 0, energy_mj=5_000)]
    prometheus = Prometheus()
    now = time.time()
    scraped(prometheus, gpus, [now - 2.0, now - 1.0])
    meter = DcgmMeter([serve(prometheus).url("/api/v1/query")])
    meter.begin_window("w")
    gpus[0].energy_mj = 100  # the driver reloaded...
    prometheus.scrape(gpus, time.time() - 0.5)
    gpus[0].energy_mj = 9_000  # ...and the counter climbed past its old value before the next read
    prometheus.scrape(gpus, time.time())
    m = meter.end_window("w")
    assert not m.valid
    assert any("counter went down" in w for w in m.warnings)
    assert by_device(m) == mj_exact({"node-1/gpu0": 9.0})  # counted from zero after the restart: 100 + 8,900 mJ


def test_prometheus_stale_samples_invalidate_the_window(serve) -> None:
    gpus = [gpu("node-1", 0)]
    prometheus = Prometheus()
    now = time.time()
    scraped(prometheus, gpus, [now - 50.0, now - 45.0])  # the exporter stopped being scraped 45 s ago
    meter = DcgmMeter([serve(prometheus).url("")], max_age_s=30.0)
    meter.begin_window("w")
    m = meter.end_window("w")
    assert not m.valid
    assert any("s old (over --energy-dcgm-max-age 30 s)" in w for w in m.warnings), m.warnings


def test_prometheus_scraping_slower_than_max_age_is_an_error(serve) -> None:
    gpus = [gpu("node-1", 0)]
    prometheus = Prometheus()
    now = time.time()
    scraped(prometheus, gpus, [now - 120.0, now - 60.0, now - 1.0])
    with pytest.raises(MeterUnavailable, match=r"scrapes node-1/gpu0 every 59\.5 s"):
        DcgmMeter([serve(prometheus).url("")], max_age_s=30.0)


def test_prometheus_refusing_the_query_is_an_error_in_its_own_words(serve) -> None:
    prometheus = Prometheus()
    prometheus.error = 'parse error: unexpected "}"'
    with pytest.raises(MeterUnavailable, match='HTTP 400 Bad Request: bad_data: parse error: unexpected "}"'):
        DcgmMeter([serve(prometheus).url("")], "{gpu=}")


def test_prometheus_without_matching_series_is_an_error(serve) -> None:
    with pytest.raises(MeterUnavailable, match="Prometheus has no series for"):
        DcgmMeter([serve(Prometheus()).url("")], '{Hostname="nowhere"}')


def test_an_exporter_taken_for_prometheus_says_how_to_fix_the_url(serve) -> None:
    server = serve(Exporter([gpu("node-1", 0)]))
    with pytest.raises(MeterUnavailable, match=r"HTTP 404 .*a dcgm-exporter URL ends in /metrics"):
        DcgmMeter([server.url("")])


# -- the factory and the plugin -------------------------------------------------------------------------------------
def test_create_meter_builds_dcgm_when_asked_and_auto_never_picks_it(serve) -> None:
    url = serve(Exporter([gpu("node-1", 0)])).url()
    meter = create_meter("dcgm", dcgm_urls=[url], dcgm_selector="0", dcgm_max_age_s=12.0)
    assert isinstance(meter, DcgmMeter) and meter.max_age_s == 12.0
    assert meter.reason.startswith("asked for with --energy-meter dcgm: 1 GPU(s) on node-1")
    assert create_meter("auto", dcgm_urls=[url]).name != "dcgm"


BENCHMARK = """
import pytest

@pytest.mark.energy(model="org/served-model", task="text_generation")
def test_remote(energy_meter):
    with energy_meter.measure("decode", samples=2, tokens=20):
        pass
"""


def _written_text(folder: Path) -> str:
    """Every file under ``folder``, zip members included, as one text."""
    parts = []
    for path in folder.rglob("*"):
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as zf:
                parts += [zf.read(name).decode("utf-8", errors="replace") for name in zf.namelist()]
        elif path.is_file():
            parts.append(path.read_text(encoding="utf-8", errors="replace"))
    return "\n".join(parts)


def test_plugin_records_remote_hosts_uuids_and_the_served_advance(bench: pytest.Pytester, serve) -> None:
    node1 = Exporter([gpu("node-1", 0), gpu("node-1", 1)])
    node2 = Exporter([gpu("node-2", 0)])
    for exporter, steps in ((node1, (250_000, 125_500)), (node2, (3_000,))):
        exporter.credentials = ("bench", "pa55word")
        exporter.step_per_scrape = {g.uuid: step for g, step in zip(exporter.gpus, steps, strict=True)}
    server1, server2 = serve(node1), serve(node2)
    bench.makepyfile(test_remote=BENCHMARK)
    result = bench.runpytest(
        "-p",
        "no:cacheprovider",
        "--energy-meter=dcgm",
        f"--energy-dcgm-url={server1.url('/metrics?token=hunter2', auth='bench:pa55word@')}",
        f"--energy-dcgm-url={server2.url(auth='bench:pa55word@')}",
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["aienergyscore: meter dcgm (measured) - asked for with --energy-meter dcgm: 3 GPU(s)*"]
    )
    [report_file] = (bench.path / "results").rglob("benchmark_report.json")
    report = json.loads(report_file.read_text())

    devices = {d["device"]: d for d in report["meter"]["devices"]}
    assert {(d["host"], d["uuid"]) for d in devices.values()} == {
        ("node-1", node1.gpus[0].uuid),
        ("node-1", node1.gpus[1].uuid),
        ("node-2", node2.gpus[0].uuid),
    }
    assert report["meter"]["details"]["hosts"] == ["node-1", "node-2"]
    [phase] = report["phases"]
    energy = {d["device"]: d["joules"] for d in phase["measurement"]["devices"]}
    expected = {}
    for exporter in (node1, node2):
        begin, end = exporter.served[-2], exporter.served[-1]  # the window's two reads
        for g in exporter.gpus:
            expected[f"{g.host}/gpu{g.index}"] = (end[g.uuid] - begin[g.uuid]) / 1000
    assert energy == expected == {"node-1/gpu0": 250.0, "node-1/gpu1": 125.5, "node-2/gpu0": 3.0}
    assert phase["measurement"]["valid"]

    written = _written_text(bench.path / "results") + "\n".join(result.outlines + result.errlines)
    assert "pa55word" not in written and "hunter2" not in written
    assert server1.url() in written


def test_plugin_dcgm_meter_that_cannot_work_fails_the_benchmark_in_one_line(bench: pytest.Pytester) -> None:
    bench.makepyfile(test_remote=BENCHMARK)
    url = closed_port_url()
    result = bench.runpytest("-p", "no:cacheprovider", "--energy-meter=dcgm", f"--energy-dcgm-url={url}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*--energy-meter dcgm (command line): --energy-dcgm-url {url}: cannot be reached*"])


def test_plugin_dcgm_without_url_is_a_usage_error_naming_both_options(bench: pytest.Pytester) -> None:
    bench.makepyfile(test_remote=BENCHMARK)
    result = bench.runpytest("--energy-meter=dcgm")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if line.startswith("ERROR:")]
    assert len(errors) == 1 and "--energy-meter" in errors[0] and "--energy-dcgm-url" in errors[0]


def test_plugin_takes_repeated_urls_and_ini_lines(bench: pytest.Pytester) -> None:
    show = (
        "from pytest_aienergyscore.plugin import settings_of\n"
        "def test_show(request):\n"
        "    print('URLS=' + ' '.join(settings_of(request.config).dcgm_urls))\n"
    )
    bench.makepyfile(test_show=show)
    result = bench.runpytest("-s", "--energy-dcgm-url=http://a:1/metrics", "--energy-dcgm-url=http://b:2/metrics")
    result.stdout.fnmatch_lines(["*URLS=http://a:1/metrics http://b:2/metrics*"])
    bench.makeini("[pytest]\nenergy_dcgm_urls =\n    http://c:3/metrics\n    http://d:4/metrics, http://e:5\n")
    result = bench.runpytest("-s")
    result.stdout.fnmatch_lines(["*URLS=http://c:3/metrics http://d:4/metrics http://e:5*"])
