"""The answers the optimum backend keeps for quality scoring: what is asked of the worker per task, how the worker
makes kept outputs readable (with real tiny models and their processors), how the file is read back, and real
optimum-benchmark runs whose kept answers match the same model run here, with the work counted unchanged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_aienergyscore.backends.base import BenchmarkRequest, LoadRequest
from pytest_aienergyscore.backends.optimum.backend import OptimumBackend, ProtocolResult
from pytest_aienergyscore.backends.optimum.outputs import answer_kind, keep_request, read_outputs
from pytest_aienergyscore.backends.optimum.worker_outputs import OUTPUTS_FILE, Keeper
from pytest_aienergyscore.config.settings import Settings
from pytest_aienergyscore.rules.tasks import get_task
from tests.support.optimum_env import MISSING, OPTIMUM_PYTHON
from tests.support.tiny_models import build_tiny_model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

REPO = Path(__file__).resolve().parents[3]
TINY_CACHE = REPO / ".cache" / "tiny-models"
PROMPTS = [
    "Tell me about the weather in spring.",
    "Write a short poem about a lighthouse keeper who counts ships at night.",
    "What is two plus two?",
    "Summarize the plot of a story about a fox and a dog.",
]


def tiny(task: str) -> Path:
    return build_tiny_model(task, TINY_CACHE / task)


# -- what the worker is asked to keep -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("task", "variant", "kind"),
    [
        ("text_generation", None, "text"),
        ("reasoning", None, "text"),
        ("automatic_speech_recognition", None, "text"),
        ("image_captioning", None, "text"),
        ("summarization", None, None),  # one forward pass per document: no summary to score
        ("summarization", "generate", "text"),
        ("text_classification", None, "class"),
        ("image_classification", None, "class"),
        ("question_answering", None, "span"),
        ("object_detection", None, "boxes"),
        ("sentence_similarity", None, None),  # the pair as one sequence: no similarity score
        ("image_generation", None, None),  # no references exist
    ],
)
def test_each_task_asks_for_the_answer_its_protocol_gives(task: str, variant: str | None, kind: str | None) -> None:
    spec = get_task(task)
    assert answer_kind(spec, spec.protocol_for(None, variant)) == kind


def test_detection_asks_for_each_original_images_size() -> None:
    image = pytest.importorskip("PIL.Image")
    samples = [{"image": image.new("RGB", (64, 48))}, {"image": image.new("RGB", (30, 20))}]
    assert keep_request("boxes", samples) == {"answer": "boxes", "image_sizes": [[64, 48], [30, 20]]}
    assert keep_request("class", samples) == {"answer": "class"}


def test_the_workers_answer_keeper_imports_nothing_but_the_standard_library() -> None:
    code = (
        "import sys; import pytest_aienergyscore.backends.optimum.worker_outputs; "
        "print(sorted(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_an_unknown_kind_of_answer_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"answer 'logits' is not one of text, class, span, boxes"):
        Keeper({"answer": "logits"})


# -- the file read back ---------------------------------------------------------------------------------------------
def test_the_workers_answers_come_back_in_sample_order(tmp_path: Path) -> None:
    (tmp_path / OUTPUTS_FILE).write_text('{"label": 1, "name": "B"}\n{"label": 0, "name": "A"}\n')
    answers, why = read_outputs(tmp_path, {"outputs": {"file": OUTPUTS_FILE, "samples": 2}}, 2)
    assert answers == [{"label": 1, "name": "B"}, {"label": 0, "name": "A"}] and why is None


@pytest.mark.parametrize(
    ("lines", "result", "reason"),
    [
        ('"a"\n', {"outputs": {"file": OUTPUTS_FILE}}, "holds 1 answers for 2 samples: they cannot be matched"),
        (None, {"outputs": {"file": OUTPUTS_FILE}}, "could not be read"),
        (None, {"outputs": {"error": "the kept outputs could not be read: boom"}}, "could not be read: boom"),
        (None, {}, "optimum-benchmark's worker kept no outputs"),
        ('"a"\n{broken\n', {"outputs": {"file": OUTPUTS_FILE}}, "could not be read"),
    ],
)
def test_answers_that_cannot_be_matched_to_the_samples_are_not_used_and_say_why(
    tmp_path: Path, lines: str | None, result: dict[str, Any], reason: str
) -> None:
    if lines is not None:
        (tmp_path / OUTPUTS_FILE).write_text(lines)
    answers, why = read_outputs(tmp_path, result, 2)
    assert answers is None and why is not None and reason in why


# -- the worker's conversion, with real tiny models -----------------------------------------------------------------
def holder(path: Path, auto: Any) -> tuple[Any, Any]:
    """A real model and processor, held the way optimum-benchmark's backend holds them."""
    model = auto.from_pretrained(path).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    return model, SimpleNamespace(pretrained_config=model.config, pretrained_processor=tokenizer)


def test_the_generate_pass_keeps_only_the_new_text_and_prefill_keeps_nothing(tmp_path: Path) -> None:
    model, backend = holder(tiny("text_generation"), transformers.AutoModelForCausalLM)
    keeper = Keeper({"answer": "text"})
    expected = []
    for prompt in PROMPTS[:2]:
        inputs = backend.pretrained_processor(prompt, return_tensors="pt")
        with torch.inference_mode():
            one = model.generate(**inputs, max_new_tokens=1, min_new_tokens=1, do_sample=False)
            out = model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False)
        keeper.keep("prefill", inputs, one)
        keeper.keep("generate", inputs, out)
        keeper.keep(None, inputs, out)  # a warm-up call, outside every window
        new = out[0, inputs["input_ids"].shape[-1] :]
        expected.append(backend.pretrained_processor.decode(new, skip_special_tokens=True))
    assert len(keeper.kept) == 2
    assert keeper.write(backend, tmp_path) == {"file": OUTPUTS_FILE, "answer": "text", "samples": 2}
    lines = [json.loads(line) for line in (tmp_path / OUTPUTS_FILE).read_text().splitlines()]
    assert lines == expected and all(isinstance(text, str) and text for text in lines)
    assert PROMPTS[0] not in lines[0]


def test_an_encoder_decoders_answer_is_all_its_decoder_tokens_but_the_special_ones() -> None:
    model, backend = holder(tiny("t5"), transformers.AutoModelForSeq2SeqLM)
    inputs = backend.pretrained_processor("summarize: " + PROMPTS[3], return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=5, do_sample=False, suppress_tokens=[0, 1, 2])
    keeper = Keeper({"answer": "text"})
    keeper.keep("generate", inputs, out)  # the encoder's prompt is longer than the answer: nothing may be cut
    assert inputs["input_ids"].shape[-1] > out.shape[-1]
    assert backend.pretrained_processor.decode(out[0], skip_special_tokens=True)  # something to lose by cutting
    assert keeper.readable(backend) == [backend.pretrained_processor.decode(out[0], skip_special_tokens=True)]


def test_a_classifiers_answer_is_its_top_class_index_and_name(tmp_path: Path) -> None:
    model, backend = holder(tiny("text_classification"), transformers.AutoModelForSequenceClassification)
    keeper = Keeper({"answer": "class"})
    tops = []
    for prompt in PROMPTS:
        with torch.inference_mode():
            output = model(**backend.pretrained_processor(prompt, return_tensors="pt"))
        keeper.keep("forward", {}, output)
        tops.append(int(output.logits[0].argmax()))
    answers = keeper.readable(backend)
    assert [a["label"] for a in answers] == tops
    assert [a["name"] for a in answers] == [model.config.id2label[top] for top in tops]


def test_an_extractive_answer_is_a_span_of_the_context_never_of_the_question() -> None:
    model, backend = holder(tiny("question_answering"), transformers.AutoModelForQuestionAnswering)
    tokenizer = backend.pretrained_processor
    question, context = "who stays awake", "the lighthouse keeper counts ships at night"
    inputs = tokenizer(question, context, return_tensors="pt")
    with torch.inference_mode():
        output = model(**inputs)
    keeper = Keeper({"answer": "span"})
    keeper.keep("forward", inputs, output)
    [answer] = keeper.readable(backend)
    ids = inputs["input_ids"][0][inputs["token_type_ids"][0] == 1].tolist()  # the context's tokens (and its [SEP])
    spans = {
        tokenizer.decode(ids[i:j], skip_special_tokens=True).strip()
        for i in range(len(ids))
        for j in range(i + 1, len(ids) + 1)
    }
    assert answer and answer in spans
    without_types = {key: value for key, value in inputs.items() if key != "token_type_ids"}
    keeper = Keeper({"answer": "span"})
    keeper.keep("forward", without_types, output)  # a model without token types: the context follows the separator
    assert keeper.readable(backend) == [answer]


DETECTION_SIZES = [(120, 40), (36, 90)]  # [width, height], neither square: a swap moves every box


def corners_in_pixels(pred_box: Any, width: int, height: int) -> list[float]:
    """A DETR box (centre x, centre y, width, height, relative to the image) as [x1, y1, x2, y2] in its pixels."""
    cx, cy, w, h = (float(v) for v in pred_box)
    return [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height]


def test_detections_come_back_in_each_original_images_pixels_from_the_sizes_the_plugin_sends(tmp_path: Path) -> None:
    image = pytest.importorskip("PIL.Image")
    path = tiny("object_detection")
    model = transformers.AutoModelForObjectDetection.from_pretrained(path).eval()
    processor = transformers.AutoImageProcessor.from_pretrained(path)
    samples = [{"image": image.new("RGB", size, (30 * i, 200, 90))} for i, size in enumerate(DETECTION_SIZES)]
    request = json.loads(json.dumps(keep_request("boxes", samples)))  # as the worker reads it from its request file
    keeper = Keeper(request)
    predicted = []
    for sample in samples:  # the model sees only resized pixels: the original size must come from the request
        inputs = processor(images=sample["image"], return_tensors="pt")
        with torch.inference_mode():
            output = model(**inputs)
        keeper.keep("forward", inputs, output)
        predicted.append(output.pred_boxes[0])
    said = keeper.write(SimpleNamespace(pretrained_processor=processor), tmp_path)
    assert said == {"file": OUTPUTS_FILE, "answer": "boxes", "samples": 2}
    answers, why = read_outputs(tmp_path, {"outputs": said}, len(samples))
    assert why is None and answers is not None
    for answer, boxes, (width, height) in zip(answers, predicted, DETECTION_SIZES, strict=True):
        assert len(answer["boxes"]) == len(answer["scores"]) == len(answer["labels"]) == model.config.num_queries
        assert all(0 <= label < len(model.config.id2label) for label in answer["labels"])
        expected = sorted(corners_in_pixels(box, width, height) for box in boxes)
        assert sorted(answer["boxes"]) == [pytest.approx(box, abs=1e-3) for box in expected]
        for x1, y1, x2, y2 in answer["boxes"]:  # each box sits inside its own image, not the transposed one
            assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height


def test_detections_with_fewer_image_sizes_than_images_are_refused_not_misplaced(tmp_path: Path) -> None:
    keeper = Keeper({"answer": "boxes", "image_sizes": [[120, 40]]})
    for _ in range(2):
        keeper.keep("forward", {}, SimpleNamespace(logits=torch.zeros(1, 5, 4), pred_boxes=torch.full((1, 5, 4), 0.5)))
    said = keeper.write(SimpleNamespace(pretrained_processor=None), tmp_path)
    assert said == {"error": "the kept outputs could not be read: ValueError: 2 detections kept for 1 image sizes"}
    assert not (tmp_path / OUTPUTS_FILE).exists()


def test_a_conversion_that_fails_leaves_no_file_and_says_why(tmp_path: Path) -> None:
    keeper = Keeper({"answer": "class"})
    keeper.keep("forward", {}, SimpleNamespace(logits=torch.zeros(1, 3)))
    said = keeper.write(SimpleNamespace(), tmp_path)  # no config: optimum-benchmark's backend never loaded
    assert said["error"].startswith("the kept outputs could not be read: AttributeError")
    assert not (tmp_path / OUTPUTS_FILE).exists()


# -- real optimum-benchmark runs ------------------------------------------------------------------------------------
needs_env = pytest.mark.skipif(not OPTIMUM_PYTHON.exists(), reason=MISSING)


def optimum_run(tmp_path: Path, task: str, keep: bool, rows: list[dict[str, Any]] | None = None) -> ProtocolResult:
    """One real optimum-benchmark run of the task's tiny model on ``rows`` (the prompts by default), on the CPU."""
    rows = rows if rows is not None else [{"text": p} for p in PROMPTS]
    data = tmp_path / "samples.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    model, spec = str(tiny(task)), get_task(task)
    backend = OptimumBackend()
    backend.keep_outputs = keep
    backend.load(LoadRequest(model, None, spec, "cpu"))
    request = BenchmarkRequest(spec, model, dataset=str(data), samples=len(rows), warmup=1)
    return backend.run_protocol(
        request, tmp_path / ("kept" if keep else "plain"), Settings(optimum_python=OPTIMUM_PYTHON)
    )


def work_done(result: ProtocolResult) -> Any:
    return result.metadata["optimum"]


@needs_env
@pytest.mark.optimum
def test_optimum_keeps_each_samples_class_in_order_as_the_model_gives_it_here(tmp_path: Path) -> None:
    result = optimum_run(tmp_path, "text_classification", keep=True)
    model, backend = holder(tiny("text_classification"), transformers.AutoModelForSequenceClassification)
    expected = []
    for prompt in PROMPTS:
        with torch.inference_mode():
            logits = model(**backend.pretrained_processor(prompt, return_tensors="pt", truncation=True)).logits
        expected.append(int(logits[0].argmax()))
    assert [row["text"] for row in result.samples] == PROMPTS
    assert result.outputs is not None and [answer["label"] for answer in result.outputs] == expected
    assert all(answer["name"] == model.config.id2label[answer["label"]] for answer in result.outputs)
    sent = json.loads((tmp_path / "kept" / "optimum_request.json").read_text())
    assert sent["keep_outputs"] == {"answer": "class"}  # asked of the worker only: the scenario to rerun is unchanged
    assert "keep_outputs" not in (tmp_path / "kept" / "energy_star_config.yaml").read_text()


@needs_env
@pytest.mark.optimum
def test_optimum_keeps_the_generated_text_without_changing_the_work_counted(tmp_path: Path) -> None:
    kept, plain = optimum_run(tmp_path, "text_generation", True), optimum_run(tmp_path, "text_generation", False)
    assert plain.outputs is None and kept.outputs is not None and len(kept.outputs) == len(PROMPTS)
    print(f"kept answers: {kept.outputs}")
    model, backend = holder(tiny("text_generation"), transformers.AutoModelForCausalLM)
    for prompt, answer in zip(PROMPTS, kept.outputs, strict=True):
        inputs = backend.pretrained_processor(prompt, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=10, min_new_tokens=10, do_sample=False)
        assert answer == backend.pretrained_processor.decode(
            out[0, inputs["input_ids"].shape[-1] :], skip_special_tokens=True
        )
    assert kept.counts == plain.counts
    kept_work = {p.name: (p.samples, p.tokens) for p in kept.phases}
    assert kept_work == {p.name: (p.samples, p.tokens) for p in plain.phases}
    assert not any("no outputs kept" in note for note in kept.notes)


@needs_env
@pytest.mark.optimum
def test_optimum_keeps_each_images_boxes_in_order_and_in_that_images_own_pixels(tmp_path: Path) -> None:
    image = pytest.importorskip("PIL.Image")
    sizes = [(120, 40), (36, 90), (64, 64)]  # [width, height]; the first two would show a swap
    for index, size in enumerate(sizes):
        image.new("RGB", size, (60 * index, 180, 40)).save(tmp_path / f"image-{index}.png")
    result = optimum_run(tmp_path, "object_detection", True, [{"image": f"image-{i}.png"} for i in range(len(sizes))])
    sent = json.loads((tmp_path / "kept" / "optimum_request.json").read_text())
    assert sent["keep_outputs"] == {"answer": "boxes", "image_sizes": [list(size) for size in sizes]}
    assert [row["image"].size for row in result.samples] == sizes
    assert result.outputs is not None and len(result.outputs) == len(sizes), result.notes
    path = tiny("object_detection")
    model = transformers.AutoModelForObjectDetection.from_pretrained(path).eval()
    processor = transformers.AutoImageProcessor.from_pretrained(path)
    for answer, sample, (width, height) in zip(result.outputs, result.samples, sizes, strict=True):
        with torch.inference_mode():
            boxes = model(**processor(images=sample["image"], return_tensors="pt")).pred_boxes[0]
        expected = sorted(corners_in_pixels(box, width, height) for box in boxes)
        assert len(answer["boxes"]) == len(answer["scores"]) == len(answer["labels"]) == model.config.num_queries
        # transformers 4 there and 5 here resize a little differently (boxes under 0.01 px apart); swapped sizes
        # would move them by tens of pixels
        assert sorted(answer["boxes"]) == [pytest.approx(box, abs=0.05) for box in expected]
        assert all(0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height for x1, y1, x2, y2 in answer["boxes"])


@needs_env
@pytest.mark.optimum
def test_optimum_keeps_each_questions_answer_in_order_as_a_span_of_its_own_context(tmp_path: Path) -> None:
    rows = [
        {"question": "who stays awake", "context": "the lighthouse keeper counts ships at night"},
        {"question": "what is measured", "context": "energy use of small models on one graphics card"},
        {"question": "where is paris", "context": "the capital of france is paris on the river seine"},
    ]
    result = optimum_run(tmp_path, "question_answering", True, rows)
    assert result.outputs is not None and len(result.outputs) == len(rows), result.notes
    model, backend = holder(tiny("question_answering"), transformers.AutoModelForQuestionAnswering)
    keeper = Keeper({"answer": "span"})
    for row in rows:
        inputs = backend.pretrained_processor(row["question"], row["context"], return_tensors="pt", truncation=True)
        with torch.inference_mode():
            keeper.keep("forward", inputs, model(**inputs))
    assert result.outputs == keeper.readable(backend)
    for answer, row in zip(result.outputs, rows, strict=True):
        assert isinstance(answer, str) and answer and answer in row["context"]


@pytest.mark.parametrize(
    ("answer", "near", "whole"),
    [
        ("keeper c", 14, "keeper counts"),  # cut at its end
        ("eeper counts", 17, "keeper counts"),  # cut at its start
        ("lighthouse", 4, "lighthouse"),  # already whole
        ("ships", 0, "ships"),  # found past where the tokens before it said
        ("boats", 20, "boats"),  # not in the context: left as decoded
    ],
)
def test_an_extractive_answer_cut_inside_a_word_is_widened_to_the_whole_words_of_its_context(
    answer: str, near: int, whole: str
) -> None:
    from pytest_aienergyscore.backends.optimum.worker_outputs import whole_words

    assert whole_words("the lighthouse keeper counts ships at night", answer, near) == whole


def test_an_answer_found_twice_is_widened_where_its_tokens_were() -> None:
    from pytest_aienergyscore.backends.optimum.worker_outputs import whole_words

    # "count" stands in both "counts" and "countless": the tokens before the span put it in the second word
    assert whole_words("he counts countless ships", "count", 10) == "countless"
