"""Energy against quality (frontier.png): read back from the figure object, not by eye: the axes name the energy's
unit and the metric with its direction, the published energy range of the task (and class) is a band from its
lowest to its highest model, and the frontier joins the models no other beats on both."""

from __future__ import annotations

from typing import Any

import numpy
import pytest

from pytest_aienergyscore.report.frontier_plot import BAND_GID, FRONTIER_GID, FrontierPoint, frontier, frontier_figure
from pytest_aienergyscore.rules.leaderboard import published_results
from tests.support.quality_records import quality, scored_record

pytest.importorskip(
    "matplotlib", reason="the plots are drawn with matplotlib: pip install 'pytest-aienergyscore[label]'"
)

CLASSIFIERS = [
    scored_record("org/small", 0.5, quality("accuracy", 0.80, rate=True)),
    scored_record("org/medium", 1.0, quality("accuracy", 0.90, rate=True)),
    scored_record("org/wasteful", 2.0, quality("accuracy", 0.85, rate=True)),
]


def _band(ax: Any) -> tuple[float, float]:
    [band] = [patch for patch in ax.patches if patch.get_gid() == BAND_GID]
    return band.get_x(), band.get_x() + band.get_width()


def _published(task: str, model_class: str | None = None) -> tuple[float, float]:
    values = [r.wh_per_1k for r in published_results(task) if model_class is None or r.model_class == model_class]
    return min(values), max(values)


def test_the_axes_name_the_energy_unit_and_the_metric_with_its_direction() -> None:
    figure = frontier_figure(CLASSIFIERS)
    assert figure is not None
    [ax] = figure.axes
    assert ax.get_xscale() == "log" and "Wh per 1,000 queries" in ax.get_xlabel()
    assert ax.get_ylabel() == "accuracy (higher is better)"
    assert ax.get_title(loc="left") == "text_classification: accuracy"
    names = sorted(text.get_text() for text in ax.texts)
    assert names == ["medium [cpu/rapl]", "small [cpu/rapl]", "wasteful [cpu/rapl]"]  # device/meter of each point


def test_the_published_energy_range_of_the_task_is_a_band_from_its_lowest_to_its_highest_model() -> None:
    figure = frontier_figure(CLASSIFIERS)
    assert figure is not None
    assert _band(figure.axes[0]) == pytest.approx(_published("text_classification"))


def test_for_text_generation_the_band_spans_the_published_models_of_the_same_class_only() -> None:
    record = scored_record("org/llm", 3.0, quality("rougeL", 0.3, source="custom"), task="text_generation")
    record.model_class = "A"
    figure = frontier_figure([record])
    assert figure is not None
    [ax] = figure.axes
    assert _band(ax) == pytest.approx(_published("text_generation", "A"))
    assert _published("text_generation", "A") != pytest.approx(_published("text_generation"))
    assert ax.get_title(loc="left") == "text_generation, class A: rougeL"


def test_a_task_the_leaderboard_does_not_publish_has_its_points_but_no_band() -> None:
    own = scored_record("org/own", 1.0, quality("f1", 0.7, source="custom"), task="my_own_task")
    figure = frontier_figure([own])
    assert figure is not None
    [ax] = figure.axes
    assert not [patch for patch in ax.patches if patch.get_gid() == BAND_GID]
    assert [text.get_text() for text in ax.texts] == ["own [cpu/rapl]"]


def test_the_frontier_joins_the_models_no_other_model_beats_on_energy_and_quality() -> None:
    figure = frontier_figure(CLASSIFIERS)
    assert figure is not None
    [line] = [line for line in figure.axes[0].lines if line.get_gid() == FRONTIER_GID]
    xy = numpy.asarray(line.get_xydata(), dtype=float)
    assert list(xy[:, 0]) == pytest.approx([0.5, 1.0])  # "wasteful" costs more than "medium" for less
    assert list(xy[:, 1]) == pytest.approx([0.80, 0.90])


def test_for_a_metric_where_lower_is_better_the_frontier_keeps_the_lowest_error() -> None:
    points = [FrontierPoint(name, wh, wer, False, "cpu/rapl") for name, wh, wer in (("a", 1, 0.3), ("b", 2, 0.2))]
    points.append(FrontierPoint("c", 3, 0.25, False, "cpu/rapl"))
    assert [p.label for p in frontier(points, higher_is_better=False)] == ["a", "b"]
    assert [p.label for p in frontier(points, higher_is_better=True)] == ["a"]  # higher WER would be "better"


def test_each_task_and_metric_gets_its_own_panel() -> None:
    similarity = scored_record("org/minilm", 0.2, quality("spearman", 0.81), task="sentence_similarity")
    figure = frontier_figure([*CLASSIFIERS, similarity])
    assert figure is not None
    titles = [ax.get_title(loc="left") for ax in figure.axes]
    assert titles == ["text_classification: accuracy", "sentence_similarity: spearman"]


def test_records_without_quality_or_without_a_per_1000_queries_figure_draw_nothing() -> None:
    failed = scored_record("org/cut", 1.0, quality("accuracy", 0.9, rate=True))
    failed.outcome = "failed"  # its partial work per query would read as a cheap model
    assert failed.total_wh() > 0 and failed.wh_per_1000_queries() is None
    assert frontier_figure([scored_record("org/plain", 1.0, None), failed]) is None
