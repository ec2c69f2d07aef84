"""Each built-in metric against a figure worked out by hand (the arithmetic is in the comments), so that a change of
library, release or call reads as a changed number here, not as a quietly different quality in a report."""

from __future__ import annotations

import pytest

from pytest_aienergyscore.quality import metrics

pytest.importorskip("torchmetrics")


def test_accuracy_and_macro_f1_match_the_hand_count() -> None:
    # reference 0 0 1 1, predicted 0 1 1 1: 3 of 4 right -> accuracy 0.75.
    # class 0: tp 1, fp 0, fn 1 -> P 1, R 1/2, F1 2/3; class 1: tp 2, fp 1, fn 0 -> P 2/3, R 1, F1 4/5.
    # macro-F1 = (2/3 + 4/5) / 2 = 11/15.
    accuracy, macro_f1 = metrics.accuracy_and_macro_f1([0, 1, 1, 1], [0, 0, 1, 1])
    assert accuracy == pytest.approx(0.75)
    assert macro_f1 == pytest.approx(11 / 15, abs=1e-6)


def test_macro_f1_counts_a_class_seen_only_in_the_predictions() -> None:
    # reference a a, predicted a b: accuracy 1/2; class a: tp 1, fn 1 -> F1 2/3; class b: fp 1 -> F1 0.
    # macro-F1 over the classes that occur = (2/3 + 0) / 2 = 1/3.
    accuracy, macro_f1 = metrics.accuracy_and_macro_f1(["a", "b"], ["a", "a"])
    assert accuracy == pytest.approx(0.5)
    assert macro_f1 == pytest.approx(1 / 3, abs=1e-6)


def test_squad_exact_match_and_f1_use_squads_normalisation() -> None:
    # "the Eiffel Tower" vs "Eiffel Tower": articles dropped by SQuAD's normalisation -> exact match 1, F1 1.
    # "in Paris France" vs "Paris": no exact match; tokens in/paris/france vs paris: 1 shared,
    # precision 1/3, recall 1 -> F1 = 2 * (1/3) * 1 / (1/3 + 1) = 1/2. Means: exact match 1/2, F1 3/4.
    exact, f1 = metrics.squad_exact_match_and_f1(["the Eiffel Tower", "in Paris France"], [["Eiffel Tower"], ["Paris"]])
    assert exact == pytest.approx(0.5)
    assert f1 == pytest.approx(0.75)


def test_squad_takes_the_best_of_several_gold_answers() -> None:
    # golds "Paris" and "in Paris": the prediction "in Paris" matches the second exactly -> 1 and 1.
    assert metrics.squad_exact_match_and_f1(["in Paris"], [["Paris", "in Paris"]]) == pytest.approx((1.0, 1.0))


def test_word_error_rate_counts_edits_over_all_reference_words_ignoring_case_and_punctuation() -> None:
    # "the cat sat on the mat" -> "the cat sat on mat": 1 deletion in 6 words.
    # "hello world" -> "Hello, world!": 0 edits once lower-cased and without punctuation.
    # corpus WER = (1 + 0) / (6 + 2) = 1/8.
    wer = metrics.word_error_rate(["the cat sat on mat", "Hello, world!"], ["the cat sat on the mat", "hello world"])
    assert wer == pytest.approx(0.125)


def test_rouge_l_is_the_f_measure_of_the_longest_common_subsequence() -> None:
    # prediction "the cat on the mat" (5 words) vs reference "the cat sat on the mat" (6 words):
    # LCS "the cat on the mat" = 5 -> P 5/5, R 5/6, F = 2 * 1 * 5/6 / (1 + 5/6) = 10/11.
    assert metrics.rouge_l(["the cat on the mat"], [["the cat sat on the mat"]]) == pytest.approx(10 / 11)


def test_rouge_l_keeps_the_best_reference_of_a_sample() -> None:
    # the second reference is the prediction itself -> 1.0, whatever the first scores.
    assert metrics.rouge_l(["a red car"], [["a dog barked loudly", "a red car"]]) == pytest.approx(1.0)


def test_spearman_correlates_ranks_not_values() -> None:
    # ranks 1 2 3 4 vs 1 3 2 4: d = 0, -1, 1, 0, sum d^2 = 2; rho = 1 - 6 * 2 / (4 * (16 - 1)) = 1 - 12/60 = 0.8.
    assert metrics.spearman([0.1, 0.2, 0.3, 0.9], [1.0, 3.0, 2.0, 4.0]) == pytest.approx(0.8, abs=1e-5)


def test_spearman_gives_tied_values_their_average_rank() -> None:
    # x ranks 1 2 3; y = 1, 2, 2 -> ranks 1, 2.5, 2.5. Pearson of the ranks:
    # x - 2 = -1 0 1; y - 2 = -1 .5 .5; covariance sum = 1 + 0 + .5 = 1.5; sqrt(2 * 1.5) = sqrt(3) -> 1.5 / 1.732.
    assert metrics.spearman([1.0, 2.0, 3.0], [1.0, 2.0, 2.0]) == pytest.approx(1.5 / 3**0.5, abs=1e-5)


def test_mean_average_precision_of_one_found_and_one_missed_object() -> None:
    pytest.importorskip("pycocotools")
    # one class, two images with one object each; the first found exactly (score .9), the second missed.
    # at every IoU threshold: precision 1 up to recall 1/2, nothing beyond. COCO's 101-point interpolation:
    # recall points 0, .01, ..., .50 (51 of 101) have precision 1 -> AP = 51/101, at .5 and averaged alike.
    truth = [{"boxes": [[10, 10, 50, 50]], "labels": [1]}, {"boxes": [[20, 20, 60, 60]], "labels": [1]}]
    found = [{"boxes": [[10, 10, 50, 50]], "scores": [0.9], "labels": [1]}, {"boxes": [], "scores": [], "labels": []}]
    figures = metrics.mean_average_precision(found, truth)
    assert figures["map"] == pytest.approx(51 / 101)
    assert figures["map_50"] == pytest.approx(51 / 101)


def test_mean_average_precision_gives_no_credit_for_the_wrong_class() -> None:
    pytest.importorskip("pycocotools")
    # the box is exact but labelled 2 where the object is 1: class 1 is never found -> AP 0 for class 1, and
    # class 2 has no ground truth (COCO leaves it out of the mean) -> mAP 0.
    truth = [{"boxes": [[0, 0, 10, 10]], "labels": [1]}]
    found = [{"boxes": [[0, 0, 10, 10]], "scores": [0.8], "labels": [2]}]
    assert metrics.mean_average_precision(found, truth)["map"] == pytest.approx(0.0)


def test_mean_average_precision_with_no_detections_at_all_is_zero() -> None:
    pytest.importorskip("pycocotools")
    truth = [{"boxes": [[0, 0, 10, 10]], "labels": [1]}]
    assert metrics.mean_average_precision([{"boxes": [], "scores": [], "labels": []}], truth) == {
        "map": 0.0,
        "map_50": 0.0,
    }


def test_library_names_the_release_that_computed_a_figure() -> None:
    from importlib.metadata import version

    assert metrics.library("torchmetrics") == f"torchmetrics {version('torchmetrics')}"
    assert metrics.library("no-such-package-here") == "no-such-package-here"
