"""AI Energy Score's rules: model classes from files (no weights loaded), the one-GPU rule for classes A and B, every
reason a result is not comparable with the leaderboard, and stars placed in the published bins."""

from __future__ import annotations

import json
import struct
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
from pytest_aienergyscore.rules import model_class as modelclass
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


# -- model classes ----------------------------------------------------------------------------------------------------


def write_safetensors_header(path: Path, shapes: dict[str, list[int]]) -> Path:
    """A safetensors file holding only its header: enough to count parameters, and nothing else is read."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in shapes.items():
        size = 2
        for dim in shape:
            size *= dim
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    return path


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [(1, "A"), (20_000_000_000, "A"), (20_000_000_001, "B"), (66_000_000_000, "B"), (66_000_000_001, "C")],
)
def test_class_boundaries(parameters: int, expected: str) -> None:
    assert modelclass.classify(parameters) == expected


def test_a_35b_checkpoint_is_class_b_from_its_header_alone(tmp_path: Path) -> None:
    # 35 billion parameters declared; the file is a few hundred bytes, so nothing but the header can have been read.
    write_safetensors_header(tmp_path / "model.safetensors", {"a": [35_000, 1_000_000], "b": [7]})
    assert (tmp_path / "model.safetensors").stat().st_size < 1000
    assert modelclass.count_parameters(tmp_path) == (35_000_000_007, "safetensors headers")
    size = modelclass.model_size([str(tmp_path)])
    assert (size.model_class, size.parameters) == ("B", 35_000_000_007)
    assert size.class_source == "35,000,000,007 parameters (safetensors headers)"


def test_sharded_checkpoint_counts_every_shard_the_index_names(tmp_path: Path) -> None:
    write_safetensors_header(tmp_path / "model-00001-of-00002.safetensors", {"x": [40_000, 1_000_000]})
    write_safetensors_header(tmp_path / "model-00002-of-00002.safetensors", {"y": [30_000, 1_000_000]})
    write_safetensors_header(tmp_path / "stray.safetensors", {"z": [10**6]})  # not in the index: not counted
    weight_map = {"x": "model-00001-of-00002.safetensors", "y": "model-00002-of-00002.safetensors"}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    assert modelclass.count_parameters(tmp_path) == (70_000_000_000, "safetensors headers")
    assert modelclass.model_size([str(tmp_path)]).model_class == "C"


def test_a_missing_shard_falls_back_to_the_config_estimate(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "gone.safetensors"}}))
    (tmp_path / "config.json").write_text(json.dumps(LLAMA3_8B))
    parameters, source = modelclass.count_parameters(tmp_path) or (0, "")
    assert source == "config.json estimate" and 7.9e9 < parameters < 8.2e9


# Published dimensions of well-known models, and their parameter counts (from their model cards).
LLAMA3_8B = {
    "hidden_size": 4096,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "intermediate_size": 14336,
    "vocab_size": 128256,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
}
LLAMA3_70B = {**LLAMA3_8B, "hidden_size": 8192, "num_hidden_layers": 80, "num_attention_heads": 64}
LLAMA3_70B["intermediate_size"] = 28672
MIXTRAL_8X7B = {**LLAMA3_8B, "vocab_size": 32000, "num_local_experts": 8}


@pytest.mark.parametrize(
    ("config", "published", "klass"),
    [(LLAMA3_8B, 8.03e9, "A"), (LLAMA3_70B, 70.6e9, "C"), (MIXTRAL_8X7B, 46.7e9, "B")],
    ids=["llama3-8b", "llama3-70b", "mixtral-8x7b"],
)
def test_config_estimate_is_within_two_percent(config: dict[str, Any], published: float, klass: str) -> None:
    estimate = modelclass.estimate_from_config(config)
    assert estimate is not None and abs(estimate - published) / published < 0.02
    assert modelclass.classify(estimate) == klass


def test_config_without_dimensions_gives_no_estimate() -> None:
    assert modelclass.estimate_from_config({"model_type": "vit", "image_size": 224}) is None


def test_a_hub_id_in_the_local_cache_is_found_without_downloading(tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "hub"
    snapshot = cache / "models--org--big-model" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (cache / "models--org--big-model" / "refs").mkdir()
    (cache / "models--org--big-model" / "refs" / "main").write_text("0123abcd")
    write_safetensors_header(snapshot / "model.safetensors", {"w": [25_000, 1_000_000]})
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert modelclass.local_model_folder("org/big-model") == snapshot
    assert modelclass.model_size(["org/big-model"]).model_class == "B"
    assert modelclass.local_model_folder("org/not-cached") is None
    assert modelclass.model_size(["org/not-cached"]) == modelclass.ModelSize()


def test_the_option_decides_the_class_and_the_count_is_kept(tmp_path: Path) -> None:
    write_safetensors_header(tmp_path / "model.safetensors", {"w": [1000, 1000]})
    size = modelclass.model_size([str(tmp_path)], override="c")
    assert (size.model_class, size.class_source, size.parameters) == ("C", "--energy-model-class", 1_000_000)
    assert modelclass.model_size(["http://a-vllm-endpoint/v1"], override="B").model_class == "B"


def test_a_loaded_models_count_is_the_last_resort() -> None:
    size = modelclass.model_size(["nobody/nothing"], loaded=70_000_000_000)
    assert (size.model_class, size.parameters_source) == ("C", "loaded model")


def test_tiny_model_is_class_a_by_its_safetensors() -> None:
    build_tiny_model("text_generation", TINY_TEXT)
    size = modelclass.model_size([str(TINY_TEXT)])
    assert size.model_class == "A" and size.parameters_source == "safetensors headers"
    config = json.loads((TINY_TEXT / "config.json").read_text())
    estimate = modelclass.estimate_from_config(config)
    assert estimate is not None and size.parameters is not None
    assert abs(estimate - size.parameters) / size.parameters < 0.05  # the estimate leaves out the norms only


# -- the one-GPU rule ---------------------------------------------------------------------------------------------


def fake_meter_info(gpus: int) -> dict[str, Any]:
    return {"name": "nvml", "devices": [{"device": f"cuda:{i}", "scope": "gpu", "name": H100} for i in range(gpus)]}


def test_gpu_count_comes_from_the_meters_devices() -> None:
    assert modelclass.gpus_in(fake_meter_info(2)) == 2
    assert modelclass.gpus_in({"devices": [{"device": "cpu", "scope": "cpu"}]}) == 0


@pytest.mark.parametrize("klass", ["A", "B"])
def test_class_a_and_b_on_two_gpus_are_refused(klass: str) -> None:
    with pytest.raises(modelclass.MultiGpuRefused, match=f"class {klass} models are benchmarked on one GPU") as info:
        modelclass.check_gpu_count(klass, modelclass.gpus_in(fake_meter_info(2)), allow_multi_gpu=False)
    assert "--energy-allow-multi-gpu" in str(info.value) and "\n" not in str(info.value)
    assert modelclass.check_gpu_count(klass, 2, allow_multi_gpu=True) is True


@pytest.mark.parametrize(("klass", "gpus"), [("A", 1), ("B", 0), ("C", 8), (None, 2)])
def test_what_the_rule_lets_through_unmarked(klass: str | None, gpus: int) -> None:
    assert modelclass.check_gpu_count(klass, gpus, allow_multi_gpu=False) is False


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
