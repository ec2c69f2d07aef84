"""The one table renderer (terminal and Markdown) and the tables drawn with it: the results and the gate's verdicts."""

from __future__ import annotations

from pathlib import Path

from pytest_aienergyscore.gate.verdicts import NO_BASELINE, REGRESSION, GateOutcome, GateSettings, Verdict
from pytest_aienergyscore.report.gate_table import gate_markdown, render_gate
from pytest_aienergyscore.report.table import Column, markdown_table, text_table

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
        "---------  -------------  --------  -------  ------  -------------------------------------------",
        "test_slow  Wh/1k queries     1.000    1.300  +30.0%  regression (no noise estimate: single runs)",
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
        lines[4]
        == "| t.py::test_slow | Wh/1k queries | 1.000 | 1.300 | +30.0% | regression (no noise estimate: single runs) |"
    )
    assert lines[-3:] == ["- 1 verdict(s) have no noise estimate", "", f"**{_outcome().headline()}**"]
