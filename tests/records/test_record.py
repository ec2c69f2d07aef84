"""How the windows of a record add up: the same phase in one repetition adds up, repetitions are averaged, and an
inner phase is part of its parent, so totals count outermost phases only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_aienergyscore.gate.baselines import benchmark_entry, repetition_totals_wh
from pytest_aienergyscore.records.figures import DeviceEnergy, Measurement
from pytest_aienergyscore.records.record import Phase, Record, combine
from pytest_aienergyscore.records.store import load_records, write_records
from pytest_aienergyscore.report.exports import custom_smaller_is_better, junit_properties, markdown_summary
from pytest_aienergyscore.report.files import energy_summary, summary_row
from pytest_aienergyscore.report.table import NESTED_NOTE, render


def window(
    name: str,
    wh: float,
    parent: str | None = None,
    repetition: int = 0,
    samples: int | None = None,
    tokens: int | None = None,
) -> Phase:
    device = DeviceEnergy("cuda:0", "gpu", wh * 3600.0, "measured", "nvml")
    measurement = Measurement(name, "nvml", "measured", 10.0, (device,))
    return Phase(name, measurement, samples, tokens, repetition, parent=parent)


def record_of(*phases: Phase) -> Record:
    return Record("t.py::test_x", "custom", model="org/m", task="text_generation", phases=list(phases))


# -- one phase: add up within a repetition, average across repetitions --------------------------------------------


def test_windows_of_one_name_in_one_repetition_add_up_with_their_samples_and_tokens() -> None:
    record = record_of(*(window("decode", wh, samples=4, tokens=10) for wh in (1.0, 2.0, 3.0)))
    assert record.phase_wh("decode") == pytest.approx(6.0)
    assert record.total_wh() == pytest.approx(6.0)
    assert record.phase_samples("decode") == 12 and record.phase_tokens("decode") == 30
    assert record.query_count() == 12
    assert record.wh_per_1000_queries() == pytest.approx(6.0 / 12 * 1000)


def test_repetitions_of_a_phase_are_averaged_after_their_windows_add_up() -> None:
    record = record_of(
        window("decode", 1.0, repetition=0, samples=2),
        window("decode", 1.0, repetition=0, samples=2),
        window("decode", 4.0, repetition=1, samples=4),
    )
    assert record.phase_wh("decode") == pytest.approx((2.0 + 4.0) / 2)
    assert record.phase_samples("decode") == 4
    assert record.repetition_totals_wh() == pytest.approx([2.0, 4.0])


def test_combine_leaves_out_windows_without_the_value_and_says_none_when_no_window_has_it() -> None:
    phases = [window("decode", 1.0, tokens=5), window("decode", 1.0), window("decode", 1.0, repetition=1, tokens=7)]
    assert combine(phases, lambda p: p.tokens) == pytest.approx(6.0)
    assert combine(phases, lambda p: p.samples) is None


def test_one_window_per_repetition_gives_the_mean_of_each_phase_as_energy_star_records_it() -> None:
    record = record_of(
        *(
            window(name, wh, repetition=r, samples=10)
            for r, wh in enumerate((1.0, 3.0))
            for name in ("prefill", "decode")
        ),
        window("preprocess", 0.5, repetition=0, samples=10),
        window("preprocess", 1.5, repetition=1, samples=10),
    )
    assert record.phase_names() == ["preprocess", "prefill", "decode"]
    assert [record.phase_wh(n) for n in record.phase_names()] == pytest.approx([1.0, 2.0, 2.0])
    assert record.total_wh() == pytest.approx(5.0)
    assert record.repetition_totals_wh() == pytest.approx([2.5, 7.5])
    assert record.query_count() == 10


# -- nesting: inner phases are parts of their parent ----------------------------------------------------------------


def nested_record() -> Record:
    return record_of(
        window("prefill", 1.0, samples=3),
        window("inner", 3.0, parent="outer", samples=3),
        window("other", 4.0, parent="outer"),
        window("outer", 10.0, samples=3),
    )


def test_the_total_adds_up_outermost_phases_only_and_inner_ones_keep_their_own_figures() -> None:
    record = nested_record()
    assert record.phase_names() == ["prefill", "outer"]
    assert record.phase_paths() == ["prefill", "outer", "outer/inner", "outer/other"]
    assert record.total_wh() == pytest.approx(11.0)
    assert record.phase_wh("outer/inner") == pytest.approx(3.0)
    assert record.phase_parent("outer/inner") == "outer" and record.phase_parent("outer") is None


def test_a_phase_nested_two_deep_is_listed_after_its_parent_and_stays_out_of_the_total() -> None:
    record = record_of(
        window("leaf", 1.0, parent="outer/middle"),
        window("middle", 2.0, parent="outer"),
        window("outer", 5.0),
        window("decode", 1.0),
    )
    assert record.phase_paths() == ["decode", "outer", "outer/middle", "outer/middle/leaf"]
    assert record.total_wh() == pytest.approx(6.0)


def test_the_same_name_under_two_parents_is_two_phases() -> None:
    record = record_of(
        window("step", 1.0, parent="a"), window("a", 2.0), window("step", 3.0, parent="b"), window("b", 4.0)
    )
    assert record.phase_wh("a/step") == pytest.approx(1.0) and record.phase_wh("b/step") == pytest.approx(3.0)
    assert record.phase_wh("step") == 0.0
    assert record.total_wh() == pytest.approx(6.0)


def test_repetition_totals_count_outermost_phases_only_and_average_to_the_total() -> None:
    record = record_of(
        *(window("decode", 1.0, parent="generate", repetition=r) for r in (0, 1) for _ in range(2)),
        window("generate", 3.0, repetition=0),
        window("generate", 5.0, repetition=1),
        window("preprocess", 1.0, repetition=0),  # measured once: counts its figure in every repetition
    )
    assert repetition_totals_wh(record) == pytest.approx([4.0, 6.0])
    assert record.total_wh() == pytest.approx(5.0)
    entry = benchmark_entry(record)
    assert entry["total_wh"] == pytest.approx(5.0) and entry["repetition_total_wh"] == pytest.approx([4.0, 6.0])


def test_every_report_figure_counts_the_parent_and_not_its_parts() -> None:
    record = nested_record()
    summary = energy_summary(record)
    assert summary["total_wh_unrounded"] == pytest.approx(11.0) and summary["total"] == 11.0
    assert summary["phases_wh"] == pytest.approx({"prefill": 1.0, "outer": 10.0})
    assert summary["wh_per_1000_queries"] == pytest.approx(11.0 / 3 * 1000)
    inner = {p["name"]: p for p in summary["phases"]}
    assert inner["inner"] == {
        "name": "inner",
        "parent": "outer",
        "wh": pytest.approx(3.0),
        "samples": 3,
        "tokens": None,
        "windows": 1,
        "in_total": False,
    }
    assert inner["outer"]["in_total"] and inner["outer"]["parent"] is None
    assert summary_row(record, None, None)["total_wh"] == pytest.approx(11.0)
    assert dict(junit_properties(record))["energy_total_wh"] == "11"
    assert custom_smaller_is_better([record])[0]["value"] == pytest.approx(11.0 / 3 * 1000)


def test_the_table_shows_an_inner_phase_in_parentheses_after_its_parent_with_a_note() -> None:
    lines = render([nested_record()])
    start = next(i for i, line in enumerate(lines) if line.startswith("test_x"))
    row, more = lines[start], lines[start + 1]  # the phases wrap onto a second line to keep within 120 columns
    assert "prefill=1.000 outer=10.000 (outer>inner=3.000)" in row and more.split() == ["(outer>other=4.000)"]
    assert "11.000" in row
    assert lines[-1] == NESTED_NOTE
    assert NESTED_NOTE not in render([record_of(window("decode", 1.0))])
    assert NESTED_NOTE in markdown_summary([nested_record()], None, "t")


# -- reading and writing --------------------------------------------------------------------------------------------


def test_a_record_keeps_each_phase_parent_through_the_store(tmp_path: Path) -> None:
    write_records(tmp_path / "records.jsonl", [nested_record()])
    [back] = load_records(tmp_path / "records.jsonl")
    assert [p.parent for p in back.phases] == [None, "outer", "outer", None]
    assert back.total_wh() == pytest.approx(11.0)


def test_a_record_written_before_phases_had_parents_reads_with_every_phase_outermost(tmp_path: Path) -> None:
    data = record_of(window("prefill", 1.0), window("decode", 2.0)).to_dict()
    for phase in data["phases"]:
        del phase["parent"]
    assert data["schema"] == 1
    (tmp_path / "old.jsonl").write_text(json.dumps(data) + "\n")
    [old] = load_records(tmp_path / "old.jsonl")
    assert [p.parent for p in old.phases] == [None, None]
    assert old.phase_names() == ["prefill", "decode"] and old.total_wh() == pytest.approx(3.0)
