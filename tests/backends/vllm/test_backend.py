"""The vllm backend against a real OpenAI-compatible server (``transformers serve`` with a tiny model built offline),
driven as a user would drive it: a benchmark file run by pytest with ``--backend vllm``, then the files it leaves
are read. Faults come from a proxy between the client and the real server; bad input from real endpoints that are
wrong in one way each. The pure parts are checked directly beside their modules' tests: test_endpoint, test_fields,
test_stream, test_server and test_summary."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_aienergyscore.backends import BackendError, LoadRequest
from pytest_aienergyscore.backends.vllm import backend as vllm_backend
from pytest_aienergyscore.backends.vllm import client as vllm_client
from pytest_aienergyscore.backends.vllm.backend import VllmBackend
from pytest_aienergyscore.backends.vllm.fields import TRANSFORMERS
from pytest_aienergyscore.records.figures import DeviceEnergy, Measurement
from pytest_aienergyscore.records.record import Phase, Record
from pytest_aienergyscore.rules.comparability import not_comparable_reasons
from pytest_aienergyscore.rules.tasks import get_task
from tests.support.fake_pynvml import FakeGpu, FakeProcess, make_gpus, make_pynvml
from tests.support.servers import (
    Server,
    fault_proxy,
    files_containing,
    free_port,
    not_found_server,
)

# needed by the benchmark runs below; tests/conftest.py imports them outside pytester's in-process runs
pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("aiohttp")

PROMPTS = [
    "Tell me about the weather in spring.",
    "Write a short poem about a lighthouse keeper who counts ships at night.",
    "What is two plus two?",
    "Name three colours of the rainbow.",
    "Why is the sea salty?",
]
SECRET = "sk-test-0123-SECRET-value-9876"

BENCHMARK = """
import json, pathlib

CASE = json.loads(pathlib.Path(__file__).with_name("case.json").read_text())

def test_bench(energy_star):
    energy_star(task=CASE["task"], model=CASE["model"], dataset=CASE["dataset"], **CASE["overrides"])
"""


def project(
    pytester: pytest.Pytester, model: str, samples: int = 3, task: str = "text_generation", **overrides: Any
) -> pytest.Pytester:
    """A benchmark file for one task on ``samples`` prompts; 10 new tokens unless overridden."""
    rows = [{"text": PROMPTS[i % len(PROMPTS)] + ("" if i < len(PROMPTS) else f" ({i})")} for i in range(samples)]
    dataset = pytester.path / "prompts.jsonl"
    dataset.write_text("".join(json.dumps(row) + "\n" for row in rows))
    case = {"task": task, "model": model, "dataset": str(dataset), "overrides": overrides}
    (pytester.path / "case.json").write_text(json.dumps(case))
    pytester.makepyfile(test_bench=BENCHMARK)
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:cacheprovider", "--energy-warmup=0", "-rf", *args)


def vllm_args(endpoint: str, out: str = "results") -> list[str]:
    return ["--backend=vllm", f"--vllm-endpoint={endpoint}", f"--energy-output={out}"]


def report(root: Path, out: str = "results") -> dict[str, Any]:
    [path] = list((root / out).glob("*/*/benchmark_report.json"))
    return json.loads(path.read_text())


def phase(report_: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in report_["phases"] if p["name"] == name)


def failed_line(result: pytest.RunResult) -> str:
    lines = [x for x in result.outlines if x.startswith("FAILED test_bench.py::test_bench - ")]
    assert len(lines) == 1, result.outlines
    return lines[0]


# -- what the backend refuses and how it meters ----------------------------------------------------------------------
def test_summarizations_forward_only_protocol_is_refused_in_one_line_before_connecting() -> None:
    request = LoadRequest("m", None, get_task("summarization"), "server", options=(("endpoint", None),))
    with pytest.raises(BackendError, match=r"one forward pass per document.*cannot run.*'generate' variant"):
        VllmBackend().load(request)


@pytest.mark.parametrize(
    ("backend", "scope", "source", "device"),
    [
        ("vllm", "process", "default", "cpu-machine"),  # the server's CPU work is in another process
        ("vllm", "process", "command line", "cpu"),  # told otherwise: as told
        ("pytorch", "process", "default", "cpu"),
    ],
)
def test_the_estimate_counts_the_machine_for_vllm_unless_told(
    backend: str, scope: str, source: str, device: str
) -> None:
    from pytest_aienergyscore.config.settings import Settings
    from pytest_aienergyscore.session.energy_session import EnergySession

    settings = Settings(backend=backend, meter="estimate", cpu_scope=scope, sources={"cpu_scope": source})
    assert list(EnergySession(settings).meter.device_scopes()) == [device]


# -- a real server: transformers serve ------------------------------------------------------------------------------
def test_pytorch_and_vllm_backends_count_the_same_tokens(bench: pytest.Pytester, tserve: Server, tiny_lm: Path) -> None:
    project(bench, str(tiny_lm), samples=3)
    run(bench, "--backend=pytorch", "--energy-output=torch").assert_outcomes(passed=1)
    run(bench, *vllm_args(tserve.url + "/", "served")).assert_outcomes(passed=1)
    torch_report, served = report(bench.path, "torch"), report(bench.path, "served")
    counts = {
        name: (phase(torch_report, name)["tokens"], phase(served, name)["tokens"]) for name in ("prefill", "decode")
    }
    print(f"tokens (pytorch, transformers serve): {counts}")
    for name, (in_process, from_server) in counts.items():
        assert from_server == in_process > 0, name
    assert phase(served, "decode")["details"]["generated_tokens"] == 3 * 10
    assert served["counts"]["input_tokens"] == torch_report["counts"]["input_tokens"] > 0
    details = phase(served, "decode")["details"]
    assert details["token_count_source"] == "server usage" and details["failed"] == 0
    assert details["server"] == TRANSFORMERS and details["endpoint"] == f"{tserve.url}/v1"
    assert json.loads(details["request_fields"]["generation_config"]) == {"min_new_tokens": 10}
    assert 0 < details["ttft_s"]["p50"] <= details["latency_s"]["p50"]
    facts = served["metadata"]["model_facts"]
    assert facts["route"] == "/v1/completions" and facts["server_local"] is True
    assert [d["device"] for d in served["meter"]["devices"]] == ["cpu-machine"]  # the server's CPU work counts


def test_concurrency_meters_the_steady_state_window(bench: pytest.Pytester, tserve: Server, tiny_lm: Path) -> None:
    project(bench, str(tiny_lm), samples=8)
    run(bench, *vllm_args(tserve.url), "--energy-concurrency=4").assert_outcomes(passed=1)
    details = phase(report(bench.path), "decode")["details"]
    assert details["concurrency"] == 4 and details["succeeded"] == 8 and details["completion_tokens"] == 80
    steady = details["steady_state"]
    assert steady["reached"] is True and steady["energy_source"] == "metered"
    assert 0 < steady["duration_s"] <= details["wall_s"] and 0 < steady["requests_completed"] <= 8
    assert 0 < steady["tokens"] <= 80 and steady["energy_j"] >= 0 and steady["j_per_request"] is not None
    assert steady["started_at"] < steady["ended_at"]


def test_latency_percentiles_and_throughput_of_a_real_server_reach_the_summary_and_the_table(
    bench: pytest.Pytester, tserve: Server, tiny_lm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    project(bench, str(tiny_lm), samples=6)
    result = run(bench, *vllm_args(tserve.url), "--energy-concurrency=2")
    result.assert_outcomes(passed=1)
    details = phase(report(bench.path), "decode")["details"]
    ttft, latency = details["ttft_s"], details["latency_s"]
    print(f"transformers serve, 6 requests, 2 in flight: ttft {ttft}, latency {latency}")
    for spread in (ttft, latency):
        assert 0 < spread["p50"] <= spread["p90"] <= spread["p99"]
    assert ttft["p99"] <= latency["p99"] and latency["p99"] <= details["wall_s"]
    assert details["output_tokens_per_s"] == pytest.approx(60 / details["wall_s"])  # 6 requests x 10 tokens
    [row] = json.loads(next((bench.path / "results").glob("*/summary.json")).read_text())["benchmarks"]
    assert row["ttft_p50_s"] == ttft["p50"] and row["latency_p99_s"] == latency["p99"]
    assert row["output_tokens_per_s"] == details["output_tokens_per_s"] and row["requests_per_s"] > 0
    [summary] = (bench.path / "results").glob("*/*/GPU_ENERGY_SUMMARY.json")
    figures = json.loads(summary.read_text())["inference_figures"]
    assert figures["output_tokens"] == 60 and figures["energy_scope"] == "cpu" and figures["meter"] == "estimate"
    assert figures["joules_per_output_token"] > 0
    assert row["joules_per_output_token"] == pytest.approx(figures["joules_per_output_token"])
    cell = f"{figures['joules_per_output_token']:.3f} J/tok"  # the table's per-output column
    assert any(cell in line for line in result.outlines), result.outlines


def test_timeouts_5xx_drops_and_cut_streams_are_retried(bench: pytest.Pytester, tserve: Server, tiny_lm: Path) -> None:
    project(bench, str(tiny_lm), samples=5)
    with fault_proxy(tserve.port, stall_s=3.0) as proxy:
        proxy.plan = ["drop", "pass", "503", "pass", "stall", "pass", "cut", "pass"]
        result = run(bench, *vllm_args(proxy.url), "--vllm-timeout=1")
    result.assert_outcomes(passed=1)
    assert proxy.posts()[:8] == ["drop", "pass", "503", "pass", "stall", "pass", "cut", "pass"]
    prefill, decode = phase(report(bench.path), "prefill")["details"], phase(report(bench.path), "decode")["details"]
    assert prefill["retries"] == 4 and prefill["failed"] == 0 and prefill["succeeded"] == 5
    assert decode["retries"] == 0 and decode["completion_tokens"] == 50
    assert len(prefill["errors"]) == 0  # retried ones succeeded: nothing failed


def test_more_than_5_percent_failed_fails_the_test_and_keeps_what_was_measured(
    bench: pytest.Pytester, tserve: Server, tiny_lm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.setattr(vllm_client, "BACKOFF_S", 0.05)
    project(bench, str(tiny_lm), samples=5)
    with fault_proxy(tserve.port) as proxy:
        proxy.plan = ["pass"] * 5 + ["503"] * 4  # prefill passes, the first generate request fails every attempt
        result = run(bench, *vllm_args(proxy.url))
    result.assert_outcomes(failed=1)
    line = failed_line(result)
    assert f"1 of 5 requests to {proxy.url}/v1 failed (20.0% > 5% allowed)" in line
    assert "stopped early, 4 not sent" in line and "HTTP 503: overloaded, try again" in line
    assert "Traceback" not in "\n".join(result.outlines)
    measured = report(bench.path)
    assert measured["outcome"] == "failed"
    assert [p["name"] for p in measured["phases"]] == ["preprocess", "prefill", "decode"]
    decode = phase(measured, "decode")["details"]
    assert decode["failed"] == 1 and decode["not_sent"] == 4 and decode["retries"] == 3


def test_5_percent_failed_is_still_a_pass_and_says_so(
    bench: pytest.Pytester, tserve: Server, tiny_lm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vllm_client, "BACKOFF_S", 0.05)
    project(bench, str(tiny_lm), samples=20, max_new_tokens=2, min_new_tokens=2)
    with fault_proxy(tserve.port) as proxy:
        proxy.plan = ["pass"] * 20 + ["503"] * 4  # one of the 20 generate requests fails for good
        run(bench, *vllm_args(proxy.url)).assert_outcomes(passed=1)
    decode = phase(report(bench.path), "decode")["details"]
    assert decode["failed"] == 1 and decode["succeeded"] == 19 and decode["failure_rate"] == 0.05
    assert decode["errors"] == ["HTTP 503: overloaded, try again"] and "error" not in decode


@pytest.fixture
def refused_port() -> int:
    return free_port()


BAD_INPUT = {
    "not a URL": (lambda s, p, n: ["--vllm-endpoint=localhost:8000"], "--vllm-endpoint 'localhost:8000': not an http"),
    "unreachable": (
        lambda s, p, n: [f"--vllm-endpoint=http://127.0.0.1:{p}/v1"],
        "cannot connect to http://127.0.0.1:{p}/v1:",
    ),
    "not OpenAI-compatible": (
        lambda s, p, n: [f"--vllm-endpoint={n}"],
        "{n}/v1 is not an OpenAI-compatible server: GET /v1/models answered 404",
    ),
    "model not served": (
        lambda s, p, n: [f"--vllm-endpoint={s.url}", "--vllm-served-model=no-such-model"],
        "model 'no-such-model' (--vllm-served-model) is not served by {s}/v1; it serves",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_one_line_naming_the_endpoint_before_metering(
    bench: pytest.Pytester, tserve: Server, tiny_lm: Path, refused_port: int, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    args, expected = BAD_INPUT[case]
    project(bench, str(tiny_lm))
    with not_found_server() as not_found:
        result = run(bench, "--backend=vllm", *args(tserve, refused_port, not_found))
        expected = expected.format(s=tserve.url, p=refused_port, n=not_found)
    result.assert_outcomes(failed=1)
    assert expected in failed_line(result)
    out = "\n".join(result.outlines)
    assert "Traceback" not in out and "pytest_aienergyscore/" not in out and "During handling" not in out
    assert not (bench.path / "results").exists()  # failed at load: nothing was metered, no record


def test_rejected_api_key_and_missing_key_are_one_line(
    bench: pytest.Pytester, tserve: Server, tiny_lm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    project(bench, str(tiny_lm))
    with fault_proxy(tserve.port, api_key=SECRET) as proxy:
        missing = run(bench, *vllm_args(proxy.url))
        monkeypatch.setenv("VLLM_API_KEY", "sk-wrong")
        wrong = run(bench, *vllm_args(proxy.url))
    assert f"{proxy.url}/v1 needs an API key (HTTP 401): set $VLLM_API_KEY" in failed_line(missing)
    assert f"{proxy.url}/v1 rejected the API key from $VLLM_API_KEY (HTTP 401)" in failed_line(wrong)
    assert "sk-wrong" not in "\n".join(wrong.outlines)


def test_unserved_task_is_one_line_naming_the_allowed_ones(
    bench: pytest.Pytester, tserve: Server, tiny_lm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    project(bench, str(tiny_lm), task="text_classification")
    result = run(bench, *vllm_args(tserve.url))
    expected = "task text_classification cannot run on --backend vllm; it serves text tasks only: text_generation"
    assert expected in failed_line(result)


def test_api_key_is_sent_but_never_written(
    bench: pytest.Pytester, tserve: Server, tiny_lm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_SERVER_KEY", SECRET)
    project(bench, str(tiny_lm))
    with fault_proxy(tserve.port, api_key=SECRET) as proxy:
        result = run(bench, *vllm_args(proxy.url), "--vllm-api-key-env=MY_SERVER_KEY", "-s", "-v")
    result.assert_outcomes(passed=1)
    assert proxy.seen and all(sent_key for _, _, _, sent_key in proxy.seen)  # every request carried the key
    results = bench.path / "results"
    assert list(results.rglob("*.zip")) and list(results.rglob("run.log")) and list(results.rglob("records.jsonl"))
    assert files_containing(results, SECRET) == [] and SECRET not in "\n".join(result.outlines)
    found = files_containing(results, f"{proxy.url}/v1")  # the check does find what is there, in zips too
    assert any(".zip:" in hit for hit in found) and any(hit.endswith("benchmark_report.json") for hit in found)
    assert report(bench.path)["metadata"]["model_facts"]["api_key"] == "from $MY_SERVER_KEY"


# -- where the server runs: remote, or local on some GPUs ------------------------------------------------------------
H100 = "NVIDIA H100 80GB HBM3"


@pytest.fixture
def fake_gpus(monkeypatch: pytest.MonkeyPatch) -> list[FakeGpu]:
    """Two H100s drawing 300 W behind the fake pynvml, installed as ``pynvml`` for the in-process runs; a test puts
    the processes that hold them in ``.processes``."""
    start = time.monotonic()
    gpus = make_gpus(2)
    for gpu in gpus:
        gpu.name = H100
        gpu.energy_mj = lambda: int((time.monotonic() - start) * 3e5)
    monkeypatch.setitem(sys.modules, "pynvml", make_pynvml(gpus))
    monkeypatch.setitem(sys.modules, "torch", None)  # ordinals as CUDA_VISIBLE_DEVICES says, not a real GPU's UUID
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return gpus


def summary(root: Path, out: str = "results") -> dict[str, Any]:
    [path] = list((root / out).glob("*/*/GPU_ENERGY_SUMMARY.json"))
    return json.loads(path.read_text())


def test_a_remote_server_metered_by_the_local_gpu_is_not_comparable_and_says_why(
    bench: pytest.Pytester, tserve: Server, tiny_lm: Path, monkeypatch: pytest.MonkeyPatch, fake_gpus: list[FakeGpu]
) -> None:
    monkeypatch.setattr(vllm_backend, "is_local_host", lambda host: False)
    project(bench, str(tiny_lm))
    run(bench, *vllm_args(tserve.url), "--energy-meter=nvml").assert_outcomes(passed=1)
    measured = report(bench.path)
    facts = measured["metadata"]["model_facts"]
    assert facts["server_local"] is False and facts["path"] is None
    assert facts["server_gpus"] is None and facts["server_pids"] is None  # nothing of a remote host is seen here
    assert [d["device"] for d in measured["meter"]["devices"]] == ["cuda:0"]  # the local GPU was metered...
    notes = "; ".join(measured["notes"])
    assert "no local GPU was metered" not in notes  # ...so no note may say otherwise
    assert "a local meter (nvml, rapl, estimate) measures this machine, not the server" in notes
    reasons = summary(bench.path)["not_comparable_reasons"]
    assert REMOTE_REASON in reasons


REMOTE_REASON = (
    "the model ran on a remote server; the local meter measured this machine, not the server: use --energy-meter dcgm"
)


def served_record(meter: str, server_local: bool) -> Record:
    """A record of a model served by a server, all its energy from ``meter``'s GPU reading."""
    device = DeviceEnergy("cuda:0" if meter != "dcgm" else "node-1/gpu0", "gpu", 3600.0, "measured", meter)
    phase_ = Phase("decode", Measurement("decode", meter, "measured", 60.0, (device,)), samples=1000)
    return Record(
        nodeid="bench.py::test_one",
        backend="vllm",
        model="org/model",
        task="text_generation",
        model_class="A",
        queries=1000,
        phases=[phase_],
        meter={"name": meter, "devices": [{"device": device.device, "scope": "gpu"}]},
        metadata={"model_facts": {"server_local": server_local}},
    )


@pytest.mark.parametrize(
    ("meter", "server_local", "named"),
    [("nvml", False, True), ("nvml", True, False), ("dcgm", False, False), ("nvml-power", False, True)],
)
def test_a_remote_server_is_comparable_only_under_a_meter_that_reads_its_gpus(
    meter: str, server_local: bool, named: bool
) -> None:
    reasons = not_comparable_reasons(served_record(meter, server_local))
    assert (REMOTE_REASON in reasons) is named, reasons


def test_the_local_servers_gpus_are_recorded_and_metered_when_asked(
    bench: pytest.Pytester, tserve: Server, tiny_lm: Path, fake_gpus: list[FakeGpu]
) -> None:
    fake_gpus[1].processes = [FakeProcess(tserve.process.pid)]
    project(bench, str(tiny_lm))
    run(bench, *vllm_args(tserve.url), "--energy-meter=nvml", "--energy-gpus=1").assert_outcomes(passed=1)
    measured = report(bench.path)
    facts = measured["metadata"]["model_facts"]
    assert facts["server_gpus"] == [{"cuda": 1, "uuid": fake_gpus[1].uuid}]
    assert tserve.process.pid in facts["server_pids"]
    assert [d["uuid"] for d in measured["meter"]["devices"]] == [fake_gpus[1].uuid]
    assert measured["metadata"]["gpu_count"] == 1


def test_metering_other_gpus_than_the_local_servers_fails_in_one_line(
    bench: pytest.Pytester, tserve: Server, tiny_lm: Path, fake_gpus: list[FakeGpu], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    fake_gpus[1].processes = [FakeProcess(tserve.process.pid)]
    project(bench, str(tiny_lm))
    result = run(bench, *vllm_args(tserve.url), "--energy-meter=nvml", "--energy-gpus=0", "--energy-model-class=C")
    result.assert_outcomes(failed=1)
    assert failed_line(result).endswith(
        f"the transformers-serve server at {tserve.url}/v1 runs on GPUs [1]; --energy-gpus meters [0]; "
        "pass --energy-gpus 1"
    )
    assert "Traceback" not in "\n".join(result.outlines)


def test_the_one_gpu_rule_counts_the_local_servers_gpus(
    bench: pytest.Pytester, tserve: Server, tiny_lm: Path, fake_gpus: list[FakeGpu], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    for gpu in fake_gpus:
        gpu.processes = [FakeProcess(tserve.process.pid)]
    project(bench, str(tiny_lm))
    result = run(bench, *vllm_args(tserve.url))  # the estimate meter: no GPU metered, yet the server uses two
    result.assert_outcomes(failed=1)
    assert failed_line(result).endswith(
        f"class A models are benchmarked on one GPU (AI Energy Score's rule), but the transformers-serve server at "
        f"{tserve.url}/v1 runs on 2 GPUs; serve the model on one GPU, or --energy-allow-multi-gpu to run anyway "
        "(the result is then not comparable)"
    )


def test_a_local_server_on_the_cpu_keeps_todays_metering_and_says_it_holds_no_gpu(
    bench: pytest.Pytester, tserve: Server, tiny_lm: Path, fake_gpus: list[FakeGpu]
) -> None:
    project(bench, str(tiny_lm))
    run(bench, *vllm_args(tserve.url), "--energy-meter=nvml").assert_outcomes(passed=1)
    measured = report(bench.path)
    facts = measured["metadata"]["model_facts"]
    assert facts["server_gpus"] == [] and tserve.process.pid in facts["server_pids"]
    assert [d["device"] for d in measured["meter"]["devices"]] == ["cuda:0"]
    assert any(
        note.startswith(f"the server at {tserve.url}/v1 (pids ") and note.endswith(") holds no GPU")
        for note in measured["notes"]
    )
