"""score_outputs pairs each task's readable outputs with the references its samples carry and records one quality
dict; whatever is missing (references, outputs, the right shape) becomes "no quality" with a reason, never an error.
score_custom runs a test's own function and turns anything wrong into one QualityError line naming it."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from pytest_aienergyscore.quality import can_score, score_custom, score_outputs
from pytest_aienergyscore.records.quality import QualityError, wh_per_1000_correct
from pytest_aienergyscore.rules.quality import OFFLINE_REFERENCES
from pytest_aienergyscore.rules.tasks import TASKS

pytest.importorskip("torchmetrics")

HUB = "AIEnergyScore/text_classification"


def _score(task: str, samples: list[dict[str, Any]], outputs: list[Any] | None, offline: bool = False) -> dict:
    return score_outputs(TASKS[task], samples, outputs, f"AIEnergyScore/{task}", offline)


def test_importing_the_quality_package_imports_no_metric_library() -> None:
    heavy = ("torch", "torchmetrics", "jiwer", "rouge_score", "pycocotools", "numpy", "nltk")
    code = f"import sys, pytest_aienergyscore.quality\nprint(','.join(m for m in {heavy!r} if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == ""


def test_classification_compares_class_indices_when_the_reference_is_an_integer() -> None:
    samples = [
        {"text": "a", "label": 0},
        {"text": "b", "label": 0},
        {"text": "c", "label": 1},
        {"text": "d", "label": 1},
    ]
    outputs = [{"label": p, "name": "whatever"} for p in (0, 1, 1, 1)]
    quality = score_outputs(TASKS["text_classification"], samples, outputs, HUB, offline=False)
    assert quality["metric"] == "accuracy"
    assert quality["value"] == pytest.approx(0.75)  # 3 of 4; macro-F1 11/15 (hand count in test_metrics.py)
    assert quality["also"]["macro_f1"] == pytest.approx(11 / 15, abs=1e-6)
    assert (quality["samples"], quality["rate"], quality["higher_is_better"]) == (4, True, True)
    assert quality["source"] == "built-in"
    assert quality["references"] == f"{HUB} column 'label'"
    assert quality["library"].startswith("torchmetrics ")


def test_classification_compares_label_names_in_any_case_when_the_reference_is_text() -> None:
    samples = [{"image": None, "label": "Tabby Cat"}, {"image": None, "label": "goldfish"}]
    outputs = [{"label": 281, "name": "tabby cat"}, {"label": 1, "name": "shark"}]
    quality = _score("image_classification", samples, outputs)
    assert quality["value"] == pytest.approx(0.5)


def test_a_rate_of_correct_answers_gives_energy_per_thousand_correct_answers() -> None:
    samples = [{"text": "x", "label": 1}, {"text": "y", "label": 0}]
    quality = _score("text_classification", samples, [{"label": 1, "name": "p"}, {"label": 1, "name": "p"}])
    assert wh_per_1000_correct(3.0, quality) == pytest.approx(6.0)  # half right: 3 Wh per 1,000 -> 6 per 1,000 right


def test_our_offline_references_are_marked_as_written_for_this_project() -> None:
    samples = [{"text": "good", "label": 1, "label_name": "positive"}]
    quality = score_outputs(
        TASKS["text_classification"],
        samples,
        [{"label": 1, "name": "POSITIVE"}],
        "pytest-aienergyscore offline samples (text_classification.jsonl)",
        offline=True,
    )
    assert quality["references"].startswith(OFFLINE_REFERENCES)
    assert "text_classification.jsonl" in quality["references"]


def test_extractive_qa_scores_squad_exact_match_with_f1_beside_it() -> None:
    samples = [
        {"question": "q1", "context": "c1", "answers": {"text": ["Eiffel Tower"], "answer_start": [4]}},
        {"question": "q2", "context": "c2", "answers": {"text": ["Paris"], "answer_start": [0]}},
    ]
    quality = _score("question_answering", samples, ["the Eiffel Tower", "in Paris France"])
    assert (quality["metric"], quality["rate"]) == ("exact_match", True)
    assert quality["value"] == pytest.approx(0.5)
    assert quality["also"]["f1"] == pytest.approx(0.75)


def test_questions_without_an_answer_are_left_out_and_counted() -> None:
    samples = [
        {"question": "q1", "context": "c", "answers": {"text": ["Paris"], "answer_start": [0]}},
        {"question": "q2", "context": "c", "answers": {"text": [], "answer_start": []}},
    ]
    quality = _score("question_answering", samples, ["Paris", ""])
    assert (quality["value"], quality["samples"]) == (1.0, 1)
    assert quality["note"].startswith("1 of 2 samples left out")


def test_speech_recognition_scores_word_error_rate_where_lower_is_better() -> None:
    samples = [{"audio": {}, "text": "THE CAT SAT ON THE MAT"}, {"audio": {}, "text": "HELLO WORLD"}]
    quality = _score("automatic_speech_recognition", samples, [" the cat sat on mat.", "Hello, world!"])
    assert (quality["metric"], quality["higher_is_better"], quality["rate"]) == ("wer", False, False)
    assert quality["value"] == pytest.approx(0.125)
    assert quality["library"].startswith("jiwer ")


def test_captions_score_rouge_l_against_the_best_of_several_references() -> None:
    samples = [{"image": None, "captions": ["a dog runs", "the cat on the mat"]}]
    quality = _score("image_captioning", samples, ["the cat on the mat"])
    assert (quality["metric"], quality["value"]) == ("rouge_l", pytest.approx(1.0))


def test_sentence_similarity_under_embed_pair_scores_spearman_against_gold_scores() -> None:
    samples = [{"sentence1": "a", "sentence2": "b", "score": s} for s in (1.0, 3.0, 2.0, 4.0)]
    quality = _score("sentence_similarity", samples, [0.1, 0.2, 0.3, 0.9], offline=True)
    assert quality["metric"] == "spearman"
    assert quality["value"] == pytest.approx(0.8, abs=1e-5)  # rank arithmetic in test_metrics.py
    assert quality["rate"] is False
    assert wh_per_1000_correct(5.0, quality) is None  # a correlation is not a count of correct answers


def test_object_detection_reads_coco_boxes_as_x_y_width_height() -> None:
    pytest.importorskip("pycocotools")
    samples = [{"image": None, "objects": {"bbox": [[10, 10, 40, 40]], "category": [3]}}]
    found = [{"boxes": [[10.0, 10.0, 50.0, 50.0]], "scores": [0.9], "labels": [3]}]  # x1 y1 x2 y2 of the same box
    quality = _score("object_detection", samples, found)
    # read as x1 y1 x2 y2 instead, the reference box would overlap the found one by IoU 900/1600: mAP well under 1
    assert quality["metric"] == "map"
    assert (quality["value"], quality["also"]["map_50"]) == (pytest.approx(1.0), pytest.approx(1.0))


@pytest.mark.parametrize(
    ("task", "words"),
    [
        ("summarization", "variant='generate'"),
        ("sentence_similarity", "variant='embed-pair'"),
    ],
)
def test_a_protocol_that_yields_nothing_to_score_says_which_variant_would(task: str, words: str) -> None:
    quality = _score(task, [{"text": "t", "sentence1": "a", "sentence2": "b"}], None)
    assert quality["metric"] is None
    assert words in quality["reason"]


def test_image_generation_has_no_quality_and_says_why() -> None:
    quality = _score("image_generation", [{"prompt": "a cat"}], [None])
    assert set(quality) == {"metric", "reason"} and quality["metric"] is None
    assert "no references exist for generated images" in quality["reason"]


def test_text_generation_without_references_names_the_columns_looked_for() -> None:
    quality = _score("text_generation", [{"text": "Tell me a story"}], ["Once upon a time"])
    assert quality["metric"] is None
    assert "'reference'" in quality["reason"] and "'target'" in quality["reason"]
    assert "official prompts have no reference answers" in quality["reason"]


def test_text_generation_with_a_reference_column_is_scored() -> None:
    quality = _score("text_generation", [{"text": "Say it", "reference": "the cat sat"}], ["the cat sat"])
    assert (quality["metric"], quality["value"]) == ("rouge_l", pytest.approx(1.0))


def test_a_reference_column_of_the_wrong_shape_is_not_used() -> None:
    samples = [{"text": "x", "label": [0.2, 0.8]}, {"text": "y", "label": [0.9, 0.1]}]
    quality = _score("text_classification", samples, [{"label": 1, "name": "a"}, {"label": 0, "name": "b"}])
    assert quality["metric"] is None
    assert "'label'" in quality["reason"] and "a class index or a label name" in quality["reason"]


def test_outputs_that_do_not_pair_with_the_samples_are_not_scored() -> None:
    quality = _score("text_classification", [{"text": "x", "label": 1}], [{"label": 1}, {"label": 0}])
    assert quality == {"metric": None, "reason": "2 outputs for 1 samples: they cannot be paired"}


def test_outputs_of_the_wrong_shape_are_reported_not_raised() -> None:
    quality = _score("text_classification", [{"text": "x", "label": 1}, {"text": "y", "label": 0}], [1, 0])
    assert quality["metric"] is None
    assert "expected {'label': int, 'name': str}" in quality["reason"]


def test_no_outputs_kept_is_a_reason_not_an_error() -> None:
    quality = _score("text_classification", [{"text": "x", "label": 1}], None)
    assert quality == {"metric": None, "reason": "the backend kept no outputs to score"}


def test_the_runner_is_told_which_benchmarks_have_outputs_worth_keeping() -> None:
    assert can_score("text_classification")
    assert not can_score("image_generation")
    assert not can_score("summarization")
    assert can_score("summarization", "generate")
    assert can_score("sentence_similarity", "embed-pair")


def test_outputs_are_not_kept_when_the_loaded_samples_have_no_references() -> None:
    assert can_score("text_generation")
    assert not can_score("text_generation", samples=[{"text": "Tell me a story"}])
    assert can_score("text_generation", samples=[{"text": "Say hi", "reference": "hi"}])
    assert not can_score("text_classification", samples=[{"text": "x", "label": [0.1, 0.9]}])


def test_a_custom_quality_function_gets_samples_and_outputs_and_is_marked_custom() -> None:
    seen: list[Any] = []

    def share_of_long_answers(samples: list[dict], outputs: list[str]) -> dict:
        seen.append((samples, outputs))
        return {"metric": "long_answers", "value": 0.5, "higher_is_better": True}

    samples, outputs = [{"text": "a"}, {"text": "b"}], ["short", "a much longer answer"]
    quality = score_custom(share_of_long_answers, samples, outputs)
    assert seen == [(samples, outputs)]
    assert quality["source"] == "custom"
    assert (quality["metric"], quality["value"], quality["samples"]) == ("long_answers", 0.5, 2)


def test_a_custom_function_that_raises_becomes_one_line_naming_it() -> None:
    def broken(samples: list[dict], outputs: list[Any]) -> dict:
        raise KeyError("label")

    with pytest.raises(QualityError) as caught:
        score_custom(broken, [{"text": "a"}], ["x"])
    message = str(caught.value)
    assert "broken" in message and "KeyError" in message and "label" in message
    assert "\n" not in message


def test_a_custom_function_returning_a_bad_dict_is_refused_naming_it() -> None:
    def sloppy(samples: list[dict], outputs: list[Any]) -> dict:
        return {"metric": "accuracy", "value": "high", "higher_is_better": True}

    with pytest.raises(QualityError, match=r"quality function .*sloppy: value 'high' of accuracy must be a finite"):
        score_custom(sloppy, [{"text": "a"}], ["x"])


def test_a_custom_function_cannot_pass_itself_off_as_built_in() -> None:
    def claims(samples: list[dict], outputs: list[Any]) -> dict:
        return {"metric": "m", "value": 1.0, "higher_is_better": True, "source": "built-in"}

    assert score_custom(claims, [{"text": "a"}], ["x"])["source"] == "custom"


def test_a_missing_metric_library_is_a_reason_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jiwer", None)  # what an environment without the quality extra looks like
    quality = _score("automatic_speech_recognition", [{"audio": {}, "text": "hello"}], ["hello"])
    assert quality["metric"] is None
    assert "jiwer is missing" in quality["reason"]
    assert "pytest-aienergyscore[quality]" in quality["reason"]
