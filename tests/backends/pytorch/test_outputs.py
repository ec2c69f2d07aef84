"""The pytorch backend keeps each sample's answer from the pass whose outputs count, as references only, and turns
them into the readable formats the quality metrics read (text, class, answer span, boxes, cosine score, image) only
when asked after the phases. Real tiny models built offline, real transformers and diffusers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("diffusers")

import torch

import tests.end_to_end.test_energy_star_pytorch as star  # a module import: its tests are not collected twice
from pytest_aienergyscore.backends.base import LoadRequest, PhaseWork
from pytest_aienergyscore.backends.pytorch.backend import PytorchBackend
from pytest_aienergyscore.rules.datasets import load_samples
from pytest_aienergyscore.rules.tasks import TASKS
from tests.support.tiny_models import TINY_TASKS, build_tiny_model

# Short generations keep the tiny models fast on two CPU cores (the protocol's 100 tokens take ~20 s for ASR).
SHORT = {"max_new_tokens": 4, "min_new_tokens": 4}
OVERRIDES: dict[str, dict[str, Any]] = {
    "reasoning": SHORT,
    "automatic_speech_recognition": SHORT,
    "image_captioning": SHORT,
    "image_generation": star.OVERRIDES["image_generation"],
}


def samples_for(task: str, folder: Path) -> list[dict[str, Any]]:
    """The end-to-end tests' three rows for ``task``, loaded the way a benchmark loads them."""
    folder.mkdir(parents=True, exist_ok=True)
    dataset = folder / "samples.jsonl"
    dataset.write_text("\n".join(json.dumps(row) for row in star.dataset_rows(task, folder)) + "\n")
    samples, _ = load_samples(TASKS[task], str(dataset), star.ROWS)
    return samples


def loaded(task: str, variant: str | None = None) -> PytorchBackend:
    model = build_tiny_model(task, star.TINY_CACHE / task)
    backend = PytorchBackend()
    backend.load(LoadRequest(str(model), None, TASKS[task], "cpu", variant=variant))
    return backend


def run_phases(backend: PytorchBackend, samples: list[dict[str, Any]], task: str) -> dict[str, PhaseWork]:
    """Every metered pass of the protocol (prefill and generate for generative tasks), seeded the same each time."""
    assert backend.protocol is not None
    torch.manual_seed(0)
    prepared = backend.preprocess(samples)
    passes = ("prefill", "generate") if backend.protocol.is_generative else backend.protocol.phases[-1:]
    return {name: backend.run(name, prepared, OVERRIDES.get(task, {}), lambda n: None) for name in passes}


def answers(task: str, tmp_path: Path, variant: str | None = None) -> tuple[PytorchBackend, list[Any], list[Any]]:
    """The backend, its samples and its readable answers for the pass whose outputs count."""
    backend = loaded(task, variant)
    samples = samples_for(task, tmp_path / task)
    backend.keep_outputs = True
    works = run_phases(backend, samples, task)
    [kept] = [work.outputs for work in works.values() if work.outputs is not None]
    return backend, samples, backend.readable_outputs(kept)


@pytest.mark.parametrize("task", ["automatic_speech_recognition", "image_captioning"])
def test_transcripts_and_captions_are_the_decoded_generation(task: str, tmp_path: Path) -> None:
    backend, samples, texts = answers(task, tmp_path)
    impl: Any = backend.impl
    tokenizer = impl.processor_tokenizer()
    with torch.inference_mode():
        for inputs, text in zip(impl.preprocess(samples).inputs, texts, strict=True):
            full = impl.model.generate(**inputs, **impl.generate_kwargs(SHORT, "generate"))
            assert isinstance(text, str)
            assert text == tokenizer.decode(full[0].tolist(), skip_special_tokens=True)  # start tokens are special


def test_a_reasoning_answer_is_the_text_of_its_sampled_generation(tmp_path: Path) -> None:
    _, samples, texts = answers("reasoning", tmp_path)
    assert len(texts) == len(samples) and all(isinstance(text, str) and text for text in texts)


def test_a_causal_model_answer_leaves_the_prompt_out(tmp_path: Path) -> None:
    backend, samples, texts = answers("text_generation", tmp_path)
    impl: Any = backend.impl
    with torch.inference_mode():
        for sample, text in zip(samples, texts, strict=True):
            prompt = impl.tokenizer(sample["text"], return_tensors="pt")
            full = impl.model.generate(**prompt, **impl.generate_kwargs({}, "generate"))
            assert full.shape[-1] == prompt["input_ids"].shape[-1] + 10  # the protocol's ten new tokens
            assert text == impl.tokenizer.decode(full[0, -10:].tolist(), skip_special_tokens=True)


@pytest.mark.parametrize("task", ["text_classification", "image_classification"])
def test_classification_answers_are_the_top_class_index_and_the_models_name_for_it(task: str, tmp_path: Path) -> None:
    backend, samples, labels = answers(task, tmp_path)
    model: Any = backend.impl.model
    prepared = backend.impl.preprocess(samples)
    with torch.inference_mode():
        expected = [int(model(**inputs).logits[0].argmax()) for inputs in prepared.inputs]
    assert [item["label"] for item in labels] == expected
    assert [item["name"] for item in labels] == [model.config.id2label[i] for i in expected]


def test_a_question_answer_is_a_span_of_whole_words_from_the_context(tmp_path: Path) -> None:
    _, samples, spans = answers("question_answering", tmp_path)
    assert len(spans) == len(samples)
    for sample, span in zip(samples, spans, strict=True):
        assert isinstance(span, str) and span
        assert span in sample["context"].lower()  # the tiny tokenizer is uncased
        assert span not in sample["question"].lower()
        assert "##" not in span  # never cut inside a word


def test_the_embed_pair_variant_answers_with_each_pairs_cosine_score(tmp_path: Path) -> None:
    backend, samples, scores = answers("sentence_similarity", tmp_path, variant="embed-pair")
    model: Any = backend.impl.model
    tokenizer: Any = backend.impl.tokenizer  # type: ignore[attr-defined]

    def embed(text: str) -> Any:
        encoded = tokenizer(text, return_tensors="pt")
        hidden = model(**encoded).last_hidden_state[0]
        return hidden.mean(dim=0)  # every token is real (no padding at batch size 1)

    with torch.inference_mode():
        expected = [
            float(torch.nn.functional.cosine_similarity(embed(s["sentence1"]), embed(s["sentence2"]), dim=0))
            for s in samples
        ]
    assert all(isinstance(score, float) for score in scores)
    assert scores == pytest.approx(expected, abs=1e-5)


def test_object_detection_answers_are_every_box_in_the_original_images_pixels(tmp_path: Path) -> None:
    backend, samples, found = answers("object_detection", tmp_path)
    model: Any = backend.impl.model
    with torch.inference_mode():
        for sample, inputs, item in zip(samples, backend.impl.preprocess(samples).inputs, found, strict=True):
            width, height = sample["image"].size  # 40 x 32: not the processor's 64 x 64 input
            centres = model(**inputs).pred_boxes[0].tolist()  # (cx, cy, w, h) relative to the image, per query
            expected = [
                [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height]
                for cx, cy, w, h in centres
            ]
            assert len(item["boxes"]) == len(item["scores"]) == len(item["labels"]) == len(centres)  # threshold 0
            assert [box for box in item["boxes"]] == [pytest.approx(box, abs=1e-3) for box in expected]
            assert all(isinstance(label, int) for label in item["labels"])


def test_image_generation_answers_with_the_image_each_prompt_made(tmp_path: Path) -> None:
    _, samples, images = answers("image_generation", tmp_path)
    assert len(images) == len(samples)
    assert all(image.size == (16, 16) for image in images)


@pytest.mark.parametrize(("task", "variant"), [("summarization", None), ("sentence_similarity", None)])
def test_a_pass_that_gives_no_answer_keeps_nothing(task: str, variant: str | None, tmp_path: Path) -> None:
    backend = loaded(task, variant)
    backend.keep_outputs = True
    works = run_phases(backend, samples_for(task, tmp_path), task)
    assert [work.outputs for work in works.values()] == [None]


def test_the_summarization_generate_variant_answers_with_its_summary(tmp_path: Path) -> None:
    _, samples, summaries = answers("summarization", tmp_path, variant="generate")
    assert len(summaries) == len(samples) and all(isinstance(text, str) for text in summaries)


def test_prefill_keeps_nothing_only_the_generation_pass_does(tmp_path: Path) -> None:
    backend = loaded("text_generation")
    backend.keep_outputs = True
    works = run_phases(backend, samples_for("text_generation", tmp_path), "text_generation")
    assert works["prefill"].outputs is None
    assert works["generate"].outputs is not None and len(works["generate"].outputs) == star.ROWS


def test_kept_outputs_are_what_the_model_returned_untouched(tmp_path: Path) -> None:
    """References only inside the window: logits still a tensor with the model's shape, no argmax, no list."""
    backend = loaded("text_classification")
    backend.keep_outputs = True
    [work] = run_phases(backend, samples_for("text_classification", tmp_path), "text_classification").values()
    assert work.outputs is not None
    labels = backend.impl.model.config.num_labels
    assert all(isinstance(kept, torch.Tensor) and kept.shape == (1, labels) for kept in work.outputs)


KEEPING_TASKS = TINY_TASKS  # every task a tiny model is built for: all of AI Energy Score's


@pytest.mark.parametrize("task", KEEPING_TASKS)
def test_keeping_outputs_changes_none_of_the_work_a_phase_counts(task: str, tmp_path: Path) -> None:
    backend = loaded(task)
    samples = samples_for(task, tmp_path)
    plain = run_phases(backend, samples, task)
    backend.keep_outputs = True
    keeping = run_phases(backend, samples, task)
    assert all(work.outputs is None for work in plain.values())
    for name in plain:
        assert (keeping[name].samples, keeping[name].tokens) == (plain[name].samples, plain[name].tokens), name
        assert keeping[name].details == plain[name].details, name


def tensors_in(kept: Any) -> list[Any]:
    """The tensors a kept answer holds (it may be a tensor, a tuple of them, or inputs with tensors)."""
    if isinstance(kept, torch.Tensor):
        return [kept]
    if isinstance(kept, (tuple, list)):
        return [t for item in kept for t in tensors_in(item)]
    if hasattr(kept, "values"):
        return [t for item in kept.values() for t in tensors_in(item)]
    return []


@pytest.mark.gpu
@pytest.mark.parametrize("task", ["text_generation", "question_answering", "text_classification", "object_detection"])
def test_on_a_gpu_answers_stay_on_the_device_until_read_after_the_phases(task: str, tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip(f"torch {torch.__version__} sees no CUDA device")
    model = build_tiny_model(task, star.TINY_CACHE / task)
    backend = PytorchBackend()
    backend.load(LoadRequest(str(model), None, TASKS[task], "cuda:0"))
    backend.keep_outputs = True
    samples = samples_for(task, tmp_path)
    [kept] = [work.outputs for work in run_phases(backend, samples, task).values() if work.outputs is not None]
    devices = {t.device.type for answer in kept for t in tensors_in(answer)}
    assert devices == {"cuda"}  # references to what the model returned: nothing was copied inside the window
    readable = backend.readable_outputs(kept)
    on_cpu = answers(task, tmp_path / "cpu")[2]
    assert [type(answer) for answer in readable] == [type(answer) for answer in on_cpu]
    assert tensors_in(readable) == []  # plain Python values
