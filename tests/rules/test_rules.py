"""AI Energy Score's rules as a benchmark meets them: the one-GPU rule for classes A and B end to end, every reason a
result is not comparable with the leaderboard, and stars placed in the published bins. The class rule alone is in
tests/rules/test_model_class.py; the parameter count it is given, in tests/backends/test_models.py."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_aienergyscore.records.figures import DeviceEnergy, Measurement
from pytest_aienergyscore.records.record import Phase, Record
from pytest_aienergyscore.report.files import energy_summary
from pytest_aienergyscore.report.table import INDICATIVE_NOTE, render
from pytest_aienergyscore.rules import leaderboard as score
from pytest_aienergyscore.rules.comparability import not_comparable_reasons
from pytest_aienergyscore.rules.rating import rate
from pytest_aienergyscore.rules.tasks import get_task
from tests.support.fake_pynvml import FakeGpu, make_pynvml
from tests.support.tiny_models import build_tiny_model

# needed by the benchmark runs below; tests/conftest.py imports them outside pytester's in-process runs
pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

REPO = Path(__file__).resolve().parents[2]
TINY_TEXT = REPO / ".cache" / "tiny-models" / "text_generation"
H100 = "NVIDIA H100 80GB HBM3"


# -- the one-GPU rule, end to end -----------------------------------------------------------------------------------


def fake_meter_info(gpus: int) -> dict[str, Any]:
    return {"name": "nvml", "devices": [{"device": f"cuda:{i}", "scope": "gpu", "name": H100} for i in range(gpus)]}


MULTI_GPU_BENCH = """
import json, pathlib

CASE = json.loads(pathlib.Path(__file__).with_name("case.json").read_text())

def test_generate(energy_star):
    energy_star(task="text_generation", model=CASE["model"], dataset=CASE["dataset"])
"""


@pytest.fixture(scope="module")
def tiny_text_model() -> Path:
    """Built, then loaded and run once here: what loading and generating import must not be first imported inside
    pytester's in-process runs, which drop such modules (torch cannot register its operators twice)."""
    build_tiny_model("text_generation", TINY_TEXT)
    tokenizer = transformers.AutoTokenizer.from_pretrained(TINY_TEXT)
    model = transformers.AutoModelForCausalLM.from_pretrained(TINY_TEXT)
    model.generate(**tokenizer("warm up", return_tensors="pt"), max_new_tokens=1, pad_token_id=0)
    return TINY_TEXT


@pytest.fixture
def two_gpu_project(pytester: pytest.Pytester, clean_env, monkeypatch, tiny_text_model: Path) -> pytest.Pytester:
    """The tiny text model on the CPU, metered by the NVML meter over a fake pynvml with two H100s drawing 300 W."""
    start = time.monotonic()
    gpus = [
        FakeGpu(
            uuid=f"GPU-aaaa000{i}-1111-2222-3333-44445555666{i}",
            energy_mj=lambda: int((time.monotonic() - start) * 3e5),
        )
        for i in range(2)
    ]
    monkeypatch.setitem(sys.modules, "pynvml", make_pynvml(gpus))
    dataset = pytester.path / "prompts.jsonl"
    dataset.write_text("\n".join(json.dumps({"text": f"Prompt number {i} about energy."}) for i in range(3)) + "\n")
    (pytester.path / "case.json").write_text(json.dumps({"model": str(tiny_text_model), "dataset": str(dataset)}))
    pytester.makepyfile(test_bench=MULTI_GPU_BENCH)
    return pytester


BASE_ARGS = ("-p", "no:cacheprovider", "--backend=pytorch", "--energy-meter=nvml", "--energy-gpus=0,1")


def _summary(root: Path) -> dict[str, Any]:
    [session] = [p for p in (root / "results").iterdir() if p.is_dir()]
    [folder] = [p for p in session.iterdir() if p.is_dir()]
    return json.loads((folder / "GPU_ENERGY_SUMMARY.json").read_text())


def test_class_a_on_two_gpus_fails_in_one_line(two_gpu_project: pytest.Pytester) -> None:
    result = two_gpu_project.runpytest(*BASE_ARGS, "--energy-warmup=0")
    result.assert_outcomes(failed=1)
    out = "\n".join(result.outlines)
    assert "class A models are benchmarked on one GPU (AI Energy Score's rule), but 2 GPUs are metered" in out
    assert "Traceback" not in out and "pytest_aienergyscore/" not in out


def test_allow_multi_gpu_runs_and_marks_the_result_not_comparable(two_gpu_project: pytest.Pytester) -> None:
    result = two_gpu_project.runpytest(*BASE_ARGS, "--energy-warmup=0", "--energy-allow-multi-gpu")
    result.assert_outcomes(passed=1)
    summary = _summary(two_gpu_project.path)
    assert summary["device"] == "gpu" and summary["devices"] == ["cuda:0", "cuda:1"]
    assert summary["model_class"] == "A" and summary["parameters"] > 0
    assert "class A model ran on 2 GPUs with --energy-allow-multi-gpu" in "; ".join(summary["not_comparable_reasons"])
    assert summary["comparable"] is False and summary["stars_indicative"] is True


def test_class_c_may_use_two_gpus(two_gpu_project: pytest.Pytester) -> None:
    result = two_gpu_project.runpytest(*BASE_ARGS, "--energy-warmup=0", "--energy-model-class=C")
    result.assert_outcomes(passed=1)
    summary = _summary(two_gpu_project.path)
    assert summary["model_class"] == "C" and summary["model_class_source"] == "--energy-model-class"
    assert not any("GPUs" in reason for reason in summary["not_comparable_reasons"])
    assert summary["star_bins"]["model_class"] == "C"


# -- not comparable: every reason -----------------------------------------------------------------------------------


def comparable_record() -> Record:
    """A record that meets every rule: NVML on one H100, 1,000 queries of the official dataset, protocol untouched."""
    task = get_task("text_generation")
    phases = []
    for name, joules in (("preprocess", 36.0), ("prefill", 3600.0), ("decode", 36000.0)):
        device = DeviceEnergy("cuda:0", "gpu", joules, "measured", "nvml")
        measurement = Measurement(name, "nvml", "measured", 60.0, (device,), counter_period_s=0.1)
        phases.append(Phase(name, measurement, samples=1000))
    return Record(
        nodeid="bench.py::test_one",
        backend="pytorch",
        model="org/model",
        task="text_generation",
        model_class="A",
        queries=1000,
        phases=phases,
        meter=fake_meter_info(1),
        environment={"gpus": [{"device": "cuda:0", "scope": "gpu", "name": H100}]},
        dataset={"name": task.dataset, "official": True},
        metadata={"protocol": task.default_protocol.to_dict(), "overrides": {}},
    )


def _cpu(record: Record) -> None:
    for i, phase in enumerate(record.phases):
        device = DeviceEnergy("cpu", "cpu", 10.0, "measured", "rapl")
        record.phases[i] = Phase(phase.name, Measurement(phase.name, "rapl", "measured", 60.0, (device,)), 1000)


def _estimate(record: Record) -> None:
    for i, phase in enumerate(record.phases):
        device = DeviceEnergy("cuda:0", "gpu", 10.0, "estimate", "nvml")
        record.phases[i] = Phase(phase.name, Measurement(phase.name, "nvml", "estimate", 60.0, (device,)), 1000)


def _power_sampling(record: Record) -> None:
    for i, phase in enumerate(record.phases):
        device = DeviceEnergy("cuda:0", "gpu", 10.0, "measured", "nvml-power")
        record.phases[i] = Phase(phase.name, Measurement(phase.name, "nvml-power", "measured", 60.0, (device,)), 1000)


def _invalid(record: Record) -> None:
    first = record.phases[0]
    m = first.measurement
    record.phases[0] = Phase(first.name, Measurement(m.name, m.meter, m.kind, 60.0, m.devices, valid=False), 1000)


def _two_gpus(record: Record, allowed: bool) -> None:
    record.meter = fake_meter_info(2)
    record.environment = {"gpus": [{"name": H100}, {"name": H100}]}
    record.metadata["multi_gpu_allowed"] = allowed


def _changed_protocol(record: Record) -> None:
    record.metadata["protocol"]["generate_kwargs"]["max_new_tokens"] = 20


REASONS: dict[str, tuple[Callable[[Record], None], str]] = {
    "cpu": (_cpu, "ran on the CPU: no GPU energy was measured"),
    "estimate": (_estimate, "energy is an estimate from CPU time, not a measurement"),
    "meter": (_power_sampling, "GPU energy from nvml-power, not NVML's energy counter"),
    "gpu model": (
        lambda r: r.environment.update(gpus=[{"name": "NVIDIA A100-SXM4-40GB"}]),
        "GPU is NVIDIA A100-SXM4-40GB, not an H100 80GB",
    ),
    "queries": (lambda r: setattr(r, "queries", 100), "100 queries instead of the protocol's 1000 (figure scaled)"),
    "invalid window": (_invalid, "a metered window was invalid (see warnings)"),
    "outcome": (lambda r: setattr(r, "outcome", "failed"), "the benchmark did not finish cleanly (failed)"),
    "more than one gpu": (
        lambda r: _two_gpus(r, allowed=False),
        "ran on 2 GPUs, class A: only class C models are benchmarked on more than one GPU",
    ),
    "multi-gpu allowed": (
        lambda r: _two_gpus(r, allowed=True),
        "class A model ran on 2 GPUs with --energy-allow-multi-gpu; "
        "the leaderboard runs class A and B models on one GPU",
    ),
    "overrides": (
        lambda r: r.metadata.update(overrides={"max_new_tokens": 4}),
        "protocol parameters changed: max_new_tokens=4",
    ),
    "protocol": (_changed_protocol, "protocol parameters differ from the text_generation task's: generate_kwargs"),
    "dataset": (
        lambda r: r.dataset.update(name="me/my-prompts", official=False),
        "dataset me/my-prompts is not the official AIEnergyScore/text_generation",
    ),
    "class unknown": (
        lambda r: setattr(r, "model_class", None),
        "model class unknown: text_generation is compared within class A, B or C (give --energy-model-class)",
    ),
}


def test_the_reference_record_is_comparable() -> None:
    record = comparable_record()
    assert not_comparable_reasons(record) == []
    summary = energy_summary(record)
    assert summary["comparable"] is True and summary["stars_indicative"] is False


@pytest.mark.parametrize("name", sorted(REASONS))
def test_every_reason_is_named(name: str) -> None:
    change, expected = REASONS[name]
    record = comparable_record()
    change(record)
    reasons = not_comparable_reasons(record)
    assert expected in reasons
    assert len(reasons) == 1, reasons  # each change breaks exactly one rule
    summary = energy_summary(record)
    assert summary["comparable"] is False and expected in summary["not_comparable_reasons"]


def test_class_c_on_several_gpus_is_no_reason() -> None:
    record = comparable_record()
    _two_gpus(record, allowed=False)
    record.model_class = "C"
    assert not_comparable_reasons(record) == []


# -- stars ------------------------------------------------------------------------------------------------------------


def test_a_comparable_result_gets_the_leaderboards_stars() -> None:
    record = comparable_record()  # 39,636 J over 1,000 queries = 11.01 Wh per 1,000 queries
    rating = rate(record)
    assert rating.stars == score.stars_for("text_generation", record.wh_per_1000_queries() or 0, "A") == 5
    assert (rating.indicative, rating.text(), rating.edition) == (False, "5/5", "2025-12")
    bins = score.star_bins("text_generation", "A")
    assert rating.bins_wh == pytest.approx([v * 1000 for v in (bins.low, *bins.edges, bins.high)])


@pytest.mark.parametrize(("wh_per_1k", "stars"), [(1.0, 5), (30.0, 4), (45.0, 3), (60.0, 2), (80.0, 1), (500.0, 1)])
def test_a_new_result_is_placed_in_the_published_bins(wh_per_1k: float, stars: int) -> None:
    # class A, Dec 2025: 4.2 ... 81.82 Wh per 1,000 queries, five bins of 15.524 Wh
    record = comparable_record()
    record.phases = [record.phases[0]]
    device = DeviceEnergy("cuda:0", "gpu", wh_per_1k * 3600.0, "measured", "nvml")
    record.phases[0] = Phase("decode", Measurement("decode", "nvml", "measured", 60.0, (device,)), 1000)
    assert rate(record).stars == stars


def test_stars_of_a_result_that_is_not_comparable_are_indicative() -> None:
    record = comparable_record()
    record.queries = 10
    rating = rate(record)
    assert rating.indicative is True and rating.text().endswith("*")
    summary = energy_summary(record)
    assert summary["stars"] == rating.stars and summary["stars_indicative"] is True
    lines = render([record])
    assert "stars" in lines[0] and rating.text() in lines[2]
    assert lines[-1] == INDICATIVE_NOTE


def test_no_stars_without_a_class_or_for_a_task_off_the_leaderboard() -> None:
    record = comparable_record()
    record.model_class = None
    summary = energy_summary(record)
    assert summary["stars"] is None and summary["stars_note"] == "model class unknown (--energy-model-class)"
    assert summary["star_bins"]["edges"] is None
    record.task = "my_own_task"
    summary = energy_summary(record)
    assert summary["stars"] is None and summary["stars_note"] == "task 'my_own_task' is not on the leaderboard"
    assert rate(record).text() == "-"


def test_unclassed_tasks_ignore_the_class() -> None:
    record = comparable_record()
    record.task = "summarization"
    record.metadata["protocol"] = get_task("summarization").default_protocol.to_dict()
    record.dataset["name"] = get_task("summarization").dataset
    rating = rate(record)
    assert rating.model_class is None and rating.stars == score.stars_for("summarization", 11.01)


REASONING_BENCH = """
import json, pathlib

CASE = json.loads(pathlib.Path(__file__).with_name("case.json").read_text())

def test_reasoning_effort(energy_star):
    energy_star(task="reasoning", model=CASE["reasoning"], dataset=CASE["dataset"],
                reasoning_params={"reasoning_effort": "high"}, max_new_tokens=3)

def test_params_on_a_task_without_reasoning(energy_star):
    energy_star(task="text_generation", model=CASE["model"], reasoning_params={"reasoning_effort": "high"})
"""


def test_reasoning_params_change_the_protocol_and_say_so(two_gpu_project: pytest.Pytester) -> None:
    case = json.loads((two_gpu_project.path / "case.json").read_text())
    case["reasoning"] = str(build_tiny_model("reasoning", TINY_TEXT.with_name("reasoning")))
    (two_gpu_project.path / "case.json").write_text(json.dumps(case))
    two_gpu_project.makepyfile(test_bench=REASONING_BENCH)
    result = two_gpu_project.runpytest("-p", "no:cacheprovider", "--backend=pytorch", "--energy-warmup=0", "-rf")
    result.assert_outcomes(passed=1, failed=1)
    assert any(
        "reasoning_params apply to the reasoning task only, not to text_generation" in x for x in result.outlines
    )
    [session] = [p for p in (two_gpu_project.path / "results").iterdir() if p.is_dir()]
    [report] = [json.loads((p / "benchmark_report.json").read_text()) for p in session.iterdir() if p.is_dir()]
    assert report["metadata"]["chat_template_extra"] == {"reasoning_effort": "high"}
    reasons = report["summary"]["not_comparable_reasons"]
    assert "protocol parameters changed: max_new_tokens=3" in reasons
    assert "chat-template switches added to the protocol: reasoning_effort='high'" in reasons
