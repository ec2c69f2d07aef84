"""The one table renderer (terminal and Markdown) and the tables drawn with it: the results and the gate's verdicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_aienergyscore.gate.verdicts import NO_BASELINE, REGRESSION, GateOutcome, GateSettings, Verdict
from pytest_aienergyscore.records.figures import DeviceEnergy, Measurement
from pytest_aienergyscore.records.quality import no_quality
from pytest_aienergyscore.records.record import Phase, Record
from pytest_aienergyscore.report.gate_table import gate_markdown, render_gate
from pytest_aienergyscore.report.table import (
    ELLIPSIS,
    QUALITY_NOTE,
    TABLE_WIDTH,
    Column,
    markdown_table,
    quality_cell,
    render,
    result_columns,
    rows,
    shorten_apart,
    shorten_middle,
    text_table,
    wrap_cell,
)
from tests.records.test_inference_figures import generative
from tests.support.quality_records import quality, scored_record

COLUMNS = (Column("name"), Column("Wh", numeric=True), Column("note"))


def test_numeric_columns_are_right_aligned_and_the_others_left() -> None:
    lines = text_table(COLUMNS, [("a", "1.5", "ok"), ("longer", "12,345.0", "")])
    assert lines == [
        "name          Wh  note",
        "------  --------  ----",
        "a            1.5  ok",
        "longer  12,345.0",
    ]


def test_a_table_without_rows_has_no_lines_not_even_headers() -> None:
    assert text_table(COLUMNS, []) == []


def test_markdown_aligns_the_same_numeric_columns_right_and_escapes_cells() -> None:
    lines = markdown_table(COLUMNS, [("a|b", "1.5", "two\nlines")])
    assert lines == ["| name | Wh | note |", "| --- | ---: | --- |", "| a\\|b | 1.5 | two lines |"]


def _outcome() -> GateOutcome:
    verdicts = [
        Verdict("t.py::test_slow", REGRESSION, "wh_per_1000_queries", 1.0, 1.3, 30.0, reason="single runs", fails=True),
        Verdict("t.py::test_new", NO_BASELINE, reason="not in the baseline file"),
    ]
    return GateOutcome(verdicts, GateSettings(10.0), Path("base.json"), notes=["1 verdict(s) have no noise estimate"])


def test_the_gate_table_shows_test_names_figures_right_aligned_then_notes_and_headline() -> None:
    assert render_gate(_outcome()) == [
        "benchmark  figure         baseline  current  change  verdict",
        "---------  -------------  --------  -------  ------  ------------------------------------------------------",
        "test_slow  Wh/1k queries     1.000    1.300  +30.0%  regression (threshold: no noise estimate, single runs)",
        "test_new   -                     -        -       -  no baseline: not in the baseline file",
        "note: 1 verdict(s) have no noise estimate",
        "energy gate FAILED: 1 regression, 0 improvement, 0 within noise, 0 within threshold, 1 no baseline; "
        "fails on a rise over 10%",
    ]


def test_a_gate_without_verdicts_prints_only_its_notes_and_headline() -> None:
    outcome = GateOutcome([], GateSettings(), notes=["no baseline at x.json: nothing compared"])
    lines = render_gate(outcome)
    assert lines[0] == "note: no baseline at x.json: nothing compared"
    assert len(lines) == 2 and lines[1].startswith("energy gate passed: 0 regression")


def test_the_gate_in_markdown_names_whole_test_ids_with_the_same_numeric_columns() -> None:
    lines = gate_markdown(_outcome())
    assert lines[:4] == [
        "### Energy gate: FAILED",
        "",
        "| benchmark | figure | baseline | current | change | verdict |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    assert (
        lines[4] == "| t.py::test_slow | Wh/1k queries | 1.000 | 1.300 | +30.0% "
        "| regression (threshold: no noise estimate, single runs) |"
    )
    assert lines[-3:] == ["- 1 verdict(s) have no noise estimate", "", f"**{_outcome().headline()}**"]


def test_a_row_with_more_cells_than_headers_is_refused_in_markdown_and_in_text() -> None:
    """GitHub drops the cells past the header's count, so a seventh cell under six headers (the notes) would vanish."""
    with pytest.raises(ValueError, match=r"a table row has 4 cells for 3 columns \(name, Wh, note\)"):
        markdown_table(COLUMNS, [("a", "1.5", "ok", "lost notes")])
    with pytest.raises(ValueError, match="a table row has 2 cells for 3 columns"):
        text_table(COLUMNS, [("a", "1.5")])


# -- fitting the terminal's width -----------------------------------------------------------------------------------

MODEL_150 = "org-with-a-long-name/" + "m" * 120 + "-instruct-v1"
WIDE = (Column("id", shorten=True), Column("Wh", numeric=True), Column("phases", wrap_at=" "))


def _estimate_record(nodeid: str, model: str, phases_wh: dict[str, float], outcome: str = "passed") -> Record:
    """A CPU-estimate record (what this machine produces) with the given outermost phases."""
    phases = [
        Phase(
            name,
            Measurement(
                name, "estimate", "estimate", 10.0, (DeviceEnergy("cpu", "cpu", wh * 3600, "estimate", "estimate"),)
            ),
            8,
        )
        for name, wh in phases_wh.items()
    ]
    return Record(nodeid, "pytorch", model=model, task="text_generation", phases=phases, outcome=outcome)


def test_an_id_is_shortened_in_the_middle_keeping_its_start_and_its_end() -> None:
    assert shorten_middle("test_energy[org/model]", 12) == "test_e" + ELLIPSIS + "odel]"
    assert shorten_middle("short", 12) == "short"
    assert len(shorten_middle("x" * 150, 40)) == 40


def test_two_ids_that_would_read_alike_once_cut_keep_the_place_where_they_differ() -> None:
    model = "sentence-transformers/all-MiniLM-L6-v2"
    ids = [f"test_sentence_similarity[{model}]", f"test_sentence_similarity_embed_pair[{model}]", "test_other[m]"]
    assert shorten_middle(ids[0], 17) == shorten_middle(ids[1], 17)  # what the plain cut did
    assert shorten_apart(ids, 17) == [
        "test_sen" + ELLIPSIS + "[sentenc",
        "test_sen" + ELLIPSIS + "_embed_p",
        "test_other[m]",
    ]
    assert shorten_apart(ids[:1], 17) == [shorten_middle(ids[0], 17)]  # nothing alike: the usual cut


def test_the_results_table_tells_a_test_and_its_variant_over_the_same_model_apart() -> None:
    model = "sentence-transformers/all-MiniLM-L6-v2"
    tests = [f"benchmarks/test_similarity.py::test_sentence_similarity{variant}[{model}]" for variant in ("", "_pair")]
    lines = render([scored_record(model, 1.0, None, test=test) for test in tests], width=80)
    names = [line.split("  ")[0] for line in lines[2:4]]
    assert len(set(names)) == 2 and ELLIPSIS in names[0]


def test_a_wrapped_cell_breaks_between_pieces_marks_the_break_and_never_splits_a_figure() -> None:
    assert wrap_cell("estimate, failed, 2 warnings, not comparable", ", ", 18) == [
        "estimate, failed,",
        "2 warnings,",
        "not comparable",
    ]
    assert wrap_cell("preprocess=1.23e-05 decode=7.89e-06", " ", 8) == ["preprocess=1.23e-05", "decode=7.89e-06"]


def test_a_table_that_fits_is_drawn_the_same_with_or_without_a_width() -> None:
    body = [("a", "1.5", "x=1 y=2"), ("longer", "12,345.0", "z=3")]
    assert text_table(WIDE, body, max_width=TABLE_WIDTH) == text_table(WIDE, body)


def test_a_table_too_wide_cuts_ids_to_a_comfortable_length_before_wrapping_lists() -> None:
    body = [("i" * 60, "1.5", "forward=1.000 call=2.000")]
    lines = text_table(WIDE, body, max_width=70)
    assert lines[2] == "i" * 19 + ELLIPSIS + "i" * 19 + "  1.5  forward=1.000 call=2.000"
    assert len(lines) == 3 and len(lines[2]) == 70


def test_a_table_still_too_wide_wraps_lists_onto_more_lines_under_their_column() -> None:
    body = [("i" * 40, "1.5", "forward=1.000 call=2.000")]
    lines = text_table(WIDE, body, max_width=52)
    assert lines[2:] == ["i" * 16 + ELLIPSIS + "i" * 15 + "  1.5  forward=1.000", " " * 39 + "call=2.000"]
    assert all(len(line) <= 52 for line in lines)


def test_the_results_table_with_a_150_character_model_and_test_id_fits_120_columns() -> None:
    model_test = f"bench_models.py::test_energy[{MODEL_150}-text_generation]"
    long_name = "bench_names.py::test_" + "that_the_assistant_answers_" * 5 + "politely_today"
    assert len(MODEL_150) == 153 and len(long_name.rsplit("::", 1)[-1]) > 150
    phases = {"preprocess": 1.2e-5, "prefill": 4.5e-6, "decode": 7.8e-6}
    records = [
        _estimate_record(model_test, MODEL_150, phases),
        _estimate_record(long_name, "org/small", phases, outcome="failed"),
    ]
    lines = render(records)
    assert lines and all(len(line) <= TABLE_WIDTH for line in lines), "\n".join(lines)
    names = [line.split("  ")[0] for line in lines[2:] if not line.startswith(" ")]
    assert names == [
        "test_energy[org-" + ELLIPSIS + "ext_generation]",
        "test_that_the_as" + ELLIPSIS + "_politely_today",
    ]
    text = "\n".join(lines)
    for figure in ("preprocess=1.20e-05", "prefill=4.50e-06", "decode=7.80e-06", "estimate", "failed", "comparable"):
        assert figure in text  # wrapped onto more lines, never cut


# -- quality beside energy ----------------------------------------------------------------------------------------


def test_the_quality_column_appears_only_when_some_benchmark_has_a_quality_figure() -> None:
    plain = scored_record("org/plain", 2.0, None)
    assert "quality" not in render([plain])[0]
    assert "quality" not in render([scored_record("org/unscored", 2.0, no_quality("no references"))])[0]
    scored = scored_record("org/scored", 1.0, quality("accuracy", 0.9234, rate=True))
    lines = render([scored, plain])
    headers = [column.header for column in result_columns([scored, plain])]
    assert headers[headers.index("Wh/1k queries") + 1] == "quality"
    assert "acc 0.92" in lines[2]
    assert lines[3].split()[5] == "-"  # benchmark, device/meter, phase, total, per 1k, then no quality figure
    assert QUALITY_NOTE in lines


def test_each_quality_cell_names_its_metric_so_tasks_with_different_metrics_read_apart() -> None:
    records = [
        scored_record("org/minilm", 0.5, quality("spearman", 0.8123), task="sentence_similarity"),
        scored_record("org/whisper", 3.0, quality("wer", 0.125, higher_is_better=False), task="asr"),
        scored_record("org/custom", 3.0, quality("a_very_long_custom_metric_name", 123.456, source="custom")),
    ]
    cells = [row[5] for row in rows(records)]
    assert cells == ["spearman 0.81", "WER 0.12", "a_very_…c_name 123"]
    assert QUALITY_NOTE not in render(records)  # every row has a figure: no dash to explain


def test_a_table_with_the_quality_and_per_output_columns_and_a_150_character_model_fits_120_columns() -> None:
    nodeid = f"bench_models.py::test_energy[{MODEL_150}-text_generation]"
    generating = Record(nodeid, "pytorch", model=MODEL_150, task="text_generation", phases=generative(), queries=100)
    generating.metadata["quality"] = quality("rougeL", 0.4321, source="custom")
    failed = scored_record("org/failed", 2.0, quality("accuracy", 0.5, rate=True))
    failed.outcome = "failed"
    lines = render([generating, failed])
    assert all(len(line) <= TABLE_WIDTH for line in lines), "\n".join(lines)
    quality_column = lines[0].index("quality")
    cells = [line[quality_column:].split()[0] for line in lines[2:] if len(line) > quality_column]
    assert cells == ["ROUGE-L", "0.43", "acc", "0.50"]  # wrapped between metric and figure, never inside either
    assert "1.800 J/tok" in lines[2]


@pytest.mark.parametrize(
    ("metric", "cell"),
    [("accuracy", "acc 0.50"), ("exact_match", "EM 0.50"), ("rouge_l", "ROUGE-L 0.50"), ("map", "mAP 0.50")],
)
def test_the_built_in_metrics_are_named_in_short_in_the_quality_cell(metric: str, cell: str) -> None:
    assert quality_cell(scored_record("org/m", 1.0, quality(metric, 0.5))) == cell
