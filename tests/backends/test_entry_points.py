"""Backends and meters are found through entry points, ours registered like anyone's: a team's own backend, shipped
in its own package, runs a benchmark through ``--backend NAME`` and leaves the standard files."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from pytest_aienergyscore.backends import Backend, BackendError, backend_class, backend_names, create_backend
from pytest_aienergyscore.config.settings import SettingsError, build_settings
from pytest_aienergyscore.meters import MeterUnavailable, create_meter, meter_names

# A third party's backend: text generation where the "model" counts characters, so every count is known exactly.
CHAR_COUNTER = '''
from pytest_aienergyscore.backends import Backend, PhaseWork, Prepared


class CharCounter(Backend):
    """Generates one token per character of the prompt: deterministic work with counts a test can predict."""

    name = "charcount"
    cpu_scope = "process"
    output_format = "charcount-v1"

    def load(self, request):
        return {"class": "CharCounter", "device": request.device, "parameters": 0}

    def preprocess(self, samples):
        texts = [row["text"] for row in samples]
        return Prepared(texts, input_tokens=sum(len(t.split()) for t in texts))

    def run(self, phase, prepared, overrides, progress):
        tokens = 0
        for text in prepared.inputs:
            tokens += 1 if phase == "prefill" else len(text)
            progress(1)
        return PhaseWork(samples=len(prepared), tokens=tokens)
'''

PROMPTS = ["one two three", "a lighthouse keeper counts ships", "two plus two"]

BENCHMARK = """
def test_counts(energy_star):
    record = energy_star(task="text_generation", model="acme/char-counter")
    assert record.backend == "charcount"
"""


def install_backend(site: Path, module: str, target: str, name: str = "charcount") -> None:
    """Put a package's module and its ``*.dist-info`` (with the entry point) on a folder that goes on PYTHONPATH:
    importlib.metadata finds it there exactly as it finds an installed package, and nothing is installed."""
    site.mkdir(exist_ok=True)
    (site / "acme_backend.py").write_text(textwrap.dedent(module), encoding="utf-8")
    info = site / "acme_backend-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-backend\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[pytest_aienergyscore.backends]\n{name} = {target}\n", encoding="utf-8")


def run_with(bench: pytest.Pytester, env: pytest.MonkeyPatch, site: Path, *args: str) -> pytest.RunResult:
    env.setenv("PYTHONPATH", str(site))
    return bench.runpytest_subprocess("-p", "no:cacheprovider", "-rA", *args)


@pytest.fixture
def acme(bench: pytest.Pytester) -> Path:
    """The third-party package, and a local dataset so that nothing is fetched."""
    site = bench.path / "site"
    install_backend(site, CHAR_COUNTER, "acme_backend:CharCounter")
    data = bench.path / "prompts.jsonl"
    data.write_text("".join(json.dumps({"text": p}) + "\n" for p in PROMPTS), encoding="utf-8")
    return site


def test_a_third_party_backend_runs_a_benchmark_and_writes_the_standard_files(
    bench: pytest.Pytester, clean_env: pytest.MonkeyPatch, acme: Path
) -> None:
    bench.makepyfile(test_acme=BENCHMARK)
    result = run_with(
        bench, clean_env, acme, "--backend", "charcount", "--energy-dataset", "prompts.jsonl", "--energy-warmup=0"
    )
    result.assert_outcomes(passed=1)
    (session,) = [p for p in (bench.path / "results").iterdir() if p.is_dir()]
    (folder,) = [p for p in session.iterdir() if p.is_dir()]
    assert folder.name == "text_generation__acme--char-counter__charcount"
    summary = json.loads((folder / "GPU_ENERGY_SUMMARY.json").read_text())
    assert summary["format"] == "charcount-v1"  # the backend's declaration reaches the report
    assert summary["units"] == "Wh" and summary["decode_wh"] >= 0
    report = json.loads((folder / "benchmark_report.json").read_text())
    decode = next(p for p in report["phases"] if p["name"] == "decode")
    # one token per character, less the first token of each prompt, which belongs to prefill
    assert decode["tokens"] == sum(len(p) for p in PROMPTS) - len(PROMPTS)
    assert report["backend"] == "charcount"


def test_an_unregistered_backend_is_a_one_line_usage_error_naming_the_registered_ones(
    bench: pytest.Pytester, clean_env: pytest.MonkeyPatch, acme: Path
) -> None:
    bench.makepyfile(test_acme=BENCHMARK)
    result = run_with(bench, clean_env, acme, "--backend", "charcont")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = "\n".join(result.errlines)
    allowed = "allowed: charcount, optimum, pytorch, vllm"
    assert f"--backend/--energy-backend: invalid value 'charcont' (from command line); {allowed}" in err
    assert "Traceback" not in err


def test_a_backend_that_cannot_be_imported_fails_its_benchmark_in_one_line(
    bench: pytest.Pytester, clean_env: pytest.MonkeyPatch
) -> None:
    site = bench.path / "site"
    install_backend(site, "import not_a_module_anywhere\n", "acme_backend:CharCounter")
    bench.makepyfile(test_acme=BENCHMARK)
    result = run_with(bench, clean_env, site, "--backend", "charcount")
    result.assert_outcomes(failed=1)
    out = "\n".join(result.outlines)
    assert "backend 'charcount' (acme_backend:CharCounter) cannot be imported: ModuleNotFoundError" in out
    assert "Traceback" not in out


def test_a_registered_object_that_is_not_a_backend_is_refused_in_one_line(
    bench: pytest.Pytester, clean_env: pytest.MonkeyPatch
) -> None:
    site = bench.path / "site"
    install_backend(site, "class CharCounter:\n    pass\n", "acme_backend:CharCounter")
    bench.makepyfile(test_acme=BENCHMARK)
    result = run_with(bench, clean_env, site, "--backend", "charcount")
    result.assert_outcomes(failed=1)
    assert "is not a subclass of pytest_aienergyscore Backend" in "\n".join(result.outlines)


def test_our_backends_and_meters_are_registered_through_entry_points() -> None:
    assert {"optimum", "pytorch", "vllm"} <= set(backend_names())
    assert {"auto", "nvml", "rapl", "estimate", "dcgm"} <= set(meter_names())
    assert backend_class("pytorch").__name__ == "PytorchBackend"
    assert create_meter("estimate", cpu_watts=3.0).name == "estimate"


def test_each_backend_declares_what_the_runner_and_reports_need() -> None:
    optimum, pytorch = backend_class("optimum"), backend_class("pytorch")
    assert optimum.meters_itself and optimum.output_format == "optimum" and optimum.cpu_scope == "machine"
    assert not pytorch.meters_itself and pytorch.output_format == "pytest_aienergyscore"
    assert not pytorch.remote and pytorch.cpu_scope == "process"
    assert all(issubclass(backend_class(name), Backend) for name in ("optimum", "pytorch", "vllm"))


def test_unknown_names_are_one_line_errors_naming_what_is_registered() -> None:
    with pytest.raises(BackendError, match=r"^unknown backend 'tensorrt'; allowed: .*optimum, pytorch, vllm"):
        create_backend("tensorrt")
    with pytest.raises(MeterUnavailable, match=r"^unknown energy meter 'wattmeter'; allowed: auto, dcgm, estimate"):
        create_meter("wattmeter")


def test_the_backend_setting_accepts_exactly_the_registered_names(tmp_path: Path) -> None:
    assert (
        build_settings({"energy_backend": "PyTorch"}, {}, env={}, cwd=tmp_path, rootdir=tmp_path).backend == "pytorch"
    )
    with pytest.raises(SettingsError, match=r"allowed: optimum, pytorch, vllm$"):
        build_settings({"energy_backend": "charcount"}, {}, env={}, cwd=tmp_path, rootdir=tmp_path)
