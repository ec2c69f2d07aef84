"""The runner scores what a benchmark's answers were worth only after its last metered window closed, records the
figure (or why there is none) beside the energy, and leaves the metered work exactly as it was without scoring.
Real tiny models, the real pytorch backend, the real estimate meter and quality scorers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import tests.end_to_end.test_energy_star_pytorch as star  # a module import: its tests are not collected twice
from pytest_aienergyscore.backends.base import Backend, BenchmarkRequest, LoadRequest, PhaseWork, Prepared
from pytest_aienergyscore.backends.pytorch.backend import PytorchBackend
from pytest_aienergyscore.config.settings import Settings
from pytest_aienergyscore.records.decode import split_details
from pytest_aienergyscore.records.quality import QualityError
from pytest_aienergyscore.records.record import Phase
from pytest_aienergyscore.rules.tasks import TASKS
from pytest_aienergyscore.session import runner
from pytest_aienergyscore.session.energy_meter import EnergyRecorder
from pytest_aienergyscore.session.energy_session import EnergySession
from tests.support.tiny_models import build_tiny_model

LABELS = [1, 0, 1]


class Timeline:
    """What happened, in order: meter windows opening and closing, answers read, quality scored."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def watch_meter(self, session: EnergySession, monkeypatch: pytest.MonkeyPatch) -> None:
        meter = session.meter
        begin, end = meter.begin_window, meter.end_window

        def begin_window(name: str) -> None:
            self.events.append(f"begin {name.split('#')[0]}")
            begin(name)

        def end_window(name: str) -> Any:
            self.events.append(f"end {name.split('#')[0]}")
            return end(name)

        monkeypatch.setattr(meter, "begin_window", begin_window)
        monkeypatch.setattr(meter, "end_window", end_window)

    def backend_factory(self, name: str) -> Backend:
        """The real pytorch backend; its answer reading is noted on the timeline."""
        backend = PytorchBackend()
        readable = backend.readable_outputs

        def readable_outputs(outputs: list[Any]) -> list[Any]:
            self.events.append("read answers")
            return readable(outputs)

        backend.readable_outputs = readable_outputs  # type: ignore[method-assign]
        return backend


def dataset(task: str, folder: Path, **extra: list[Any]) -> str:
    """The end-to-end tests' three rows for ``task``, plus reference columns."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = star.dataset_rows(task, folder)
    for column, values in extra.items():
        for row, value in zip(rows, values, strict=True):
            row[column] = value
    path = folder / "samples.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    return str(path)


def benchmark(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    task: str,
    timeline: Timeline | None = None,
    **fields: Any,
) -> EnergyRecorder:
    """One energy_star benchmark through the runner, on the estimate meter; returns its recorder."""
    session = EnergySession(Settings(meter="estimate", output_dir=tmp_path / "results"))
    timeline = timeline or Timeline()
    timeline.watch_meter(session, monkeypatch)
    recorder = EnergyRecorder(session, f"test_{task}")
    if "dataset" not in fields:
        fields["dataset"] = dataset(task, tmp_path / task)
    request = BenchmarkRequest(
        task=TASKS[task],
        model=str(build_tiny_model(task, star.TINY_CACHE / task)),
        samples=star.ROWS,
        warmup=1,
        **fields,
    )
    runner.run_benchmark(recorder, "pytorch", request, runner.BackendCache(timeline.backend_factory))
    return recorder


def test_a_classification_benchmark_records_its_accuracy_over_every_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torchmetrics")
    task = "text_classification"
    recorder = benchmark(tmp_path, monkeypatch, task, dataset=dataset(task, tmp_path / task, label=LABELS))
    predicted = predictions(task, recorder)
    quality = recorder.metadata["quality"]
    assert quality["metric"] == "accuracy", quality
    assert quality["source"] == "built-in"
    assert quality["samples"] == star.ROWS
    assert quality["value"] == pytest.approx(sum(p == ref for p, ref in zip(predicted, LABELS, strict=True)) / 3)


def predictions(task: str, recorder: EnergyRecorder) -> list[int]:
    """The tiny model's top classes for the benchmark's samples, computed here without the backend."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = build_tiny_model(task, star.TINY_CACHE / task)
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModelForSequenceClassification.from_pretrained(path)
    with torch.inference_mode():
        return [int(model(**tokenizer(text, return_tensors="pt")).logits.argmax()) for text in star.PROMPTS]


def test_answers_are_read_and_scored_only_after_the_last_window_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    timeline = Timeline()
    seen: list[tuple[list[dict[str, Any]], list[Any]]] = []

    def words(samples: list[dict[str, Any]], outputs: list[Any]) -> dict[str, Any]:
        timeline.events.append("quality function")
        seen.append((samples, outputs))
        return {"metric": "words", "value": sum(len(o.split()) for o in outputs), "higher_is_better": True}

    recorder = benchmark(tmp_path, monkeypatch, "text_generation", timeline, quality=words, repeat=2)
    events = timeline.events
    assert events[-2:] == ["read answers", "quality function"]
    repetition = ["begin prefill", "end prefill", "begin generate", "end generate"]
    assert events[:-2] == ["begin preprocess", "end preprocess"] * 2 + repetition * 2  # no window after reading
    [(samples, outputs)] = seen
    assert [s["text"] for s in samples] == star.PROMPTS
    assert len(outputs) == star.ROWS and all(isinstance(text, str) for text in outputs)
    quality = recorder.metadata["quality"]
    assert quality["metric"] == "words" and quality["source"] == "custom" and quality["samples"] == star.ROWS


def test_a_failing_quality_function_fails_in_one_line_and_keeps_the_measured_phases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(samples: list[dict[str, Any]], outputs: list[Any]) -> dict[str, Any]:
        return {"metric": "ratio", "value": len(outputs) / 0, "higher_is_better": True}

    with pytest.raises(QualityError) as raised:
        benchmark(tmp_path, monkeypatch, "text_classification", quality=broken)
    message = str(raised.value)
    assert "broken" in message and "ZeroDivisionError" in message and "\n" not in message


def test_the_record_keeps_the_phases_and_says_why_when_the_quality_function_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorders: list[EnergyRecorder] = []
    original = EnergyRecorder.__init__

    def remember(self: EnergyRecorder, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        recorders.append(self)

    monkeypatch.setattr(EnergyRecorder, "__init__", remember)
    with pytest.raises(QualityError):
        benchmark(tmp_path, monkeypatch, "text_classification", quality=lambda samples, outputs: 0.5)
    [recorder] = recorders
    assert [phase.name for phase in recorder.phases] == ["preprocess", "forward"]
    assert recorder.metadata["quality"]["metric"] is None
    assert "0.5" in recorder.metadata["quality"]["reason"]
    assert any(note.startswith("quality not scored:") for note in recorder.notes)


def test_a_protocol_without_answers_records_why_it_has_no_quality(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = benchmark(tmp_path, monkeypatch, "summarization")
    quality = recorder.metadata["quality"]
    assert quality["metric"] is None and "variant='generate'" in quality["reason"]
    assert f"quality not scored: {quality['reason']}" in recorder.notes


def work_of(recorder: EnergyRecorder) -> dict[str, Any]:
    """Everything a benchmark counted (phases, samples, tokens, details, counts), without the energy figures."""
    energy_keys = set(split_details(recorder.phases[0].measurement, recorder.phases[0].measurement))
    phases = [
        (p.name, p.repetition, p.samples, p.tokens, {k: v for k, v in p.details.items() if k not in energy_keys})
        for p in recorder.phases
    ]
    return {"phases": phases, "counts": recorder.counts, "queries": recorder.identity.get("queries")}


@pytest.mark.parametrize("task", ["text_generation", "image_generation"])
def test_scoring_leaves_the_metered_work_exactly_as_without_it(
    task: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = star.OVERRIDES.get(task, {})
    monkeypatch.setattr(
        runner.task_quality, "can_score", lambda task, variant=None, samples=None: False
    )  # as a task without metric
    plain = benchmark(tmp_path / "plain", monkeypatch, task, repeat=2, overrides=overrides)
    assert plain.metadata["quality"]["metric"] is None  # nothing kept, nothing scored

    def count(samples: list[dict[str, Any]], outputs: list[Any]) -> dict[str, Any]:
        return {"metric": "answers", "value": len(outputs), "higher_is_better": True}

    scored = benchmark(tmp_path / "scored", monkeypatch, task, repeat=2, overrides=overrides, quality=count)
    assert scored.metadata["quality"]["value"] == star.ROWS
    assert work_of(scored) == work_of(plain)
    assert {"forward_calls", "generate_calls", "images", "scheduler_steps"} & set(scored.phases[-1].details)


class SelfMetering(Backend):
    """A backend that runs and meters the protocol itself (as optimum-benchmark does) and hands back its answers,
    readable already, with the samples they answer: the runner scores them after reading its phases."""

    name = "self-metering"
    meters_itself = True

    def __init__(self, session: EnergySession, answers: list[Any], samples: list[dict[str, Any]]) -> None:
        self.session, self.answers, self.samples = session, answers, samples

    def load(self, request: LoadRequest) -> dict[str, Any]:
        self.protocol = request.protocol()
        return {}

    def preprocess(self, samples: list[dict[str, Any]]) -> Prepared:
        raise AssertionError("a self-metering backend preprocesses in its own run")

    def run(self, phase: str, prepared: Prepared, overrides: dict[str, Any], progress: Any) -> PhaseWork:
        raise AssertionError("a self-metering backend runs its own phases")

    def run_protocol(self, request: BenchmarkRequest, run_dir: Path, settings: Any, progress: Any = None) -> Any:
        from pytest_aienergyscore.backends.optimum.backend import ProtocolResult

        meter = self.session.meter
        meter.begin_window("forward")
        phase = Phase("forward", meter.end_window("forward"), samples=len(self.samples))
        dataset = {"name": "their rows", "source": "local file"}
        kept = self.answers if self.keep_outputs else None
        return ProtocolResult([phase], len(self.samples), dataset=dataset, outputs=kept, samples=self.samples)


def self_metered(tmp_path: Path, answers: list[Any], samples: list[dict[str, Any]], **fields: Any) -> EnergyRecorder:
    session = EnergySession(Settings(meter="estimate", output_dir=tmp_path / "results"))
    recorder = EnergyRecorder(session, "test_self_metered")
    request = BenchmarkRequest(task=TASKS["text_classification"], model="their-model", samples=3, **fields)
    cache = runner.BackendCache(lambda name: SelfMetering(session, answers, samples))
    runner.run_benchmark(recorder, "self-metering", request, cache)
    return recorder


def test_a_self_metering_backends_answers_are_scored_against_the_samples_it_ran(tmp_path: Path) -> None:
    pytest.importorskip("torchmetrics")
    answers = [{"label": 1, "name": "POSITIVE"}, {"label": 1, "name": "POSITIVE"}, {"label": 0, "name": "NEGATIVE"}]
    samples = [{"text": p, "label": label} for p, label in zip(star.PROMPTS, LABELS, strict=True)]
    recorder = self_metered(tmp_path, answers, samples)
    quality = recorder.metadata["quality"]
    assert (quality["metric"], quality["samples"]) == ("accuracy", 3)
    assert quality["value"] == pytest.approx(1 / 3)  # only the first answer matches its label
    assert [phase.name for phase in recorder.phases] == ["forward"]


def test_a_self_metering_backend_that_names_no_samples_gets_no_quality_and_says_why(tmp_path: Path) -> None:
    recorder = self_metered(tmp_path, ["an answer"] * 3, [], quality=lambda samples, outputs: {})
    quality = recorder.metadata["quality"]
    assert quality["metric"] is None and "did not say which samples" in quality["reason"]
