"""CI exports: Markdown job summary, pytest-benchmark-shaped JSON, github-action-benchmark, Bencher BMF, JUnit
properties and pytest-benchmark extra_info."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from pytest_aienergyscore.gate.baselines import benchmark_entry
from pytest_aienergyscore.gate.verdicts import GateSettings, compare_entry
from pytest_aienergyscore.records.figures import DeviceEnergy, Measurement
from pytest_aienergyscore.records.quality import no_quality
from pytest_aienergyscore.records.record import Phase, Record
from pytest_aienergyscore.report.exports import (
    BMF_PER_1K,
    BMF_TOTAL,
    UNIT_PER_1K,
    UNIT_TOTAL,
    bencher_bmf,
    custom_smaller_is_better,
    junit_properties,
    markdown_summary,
    pytest_benchmark_json,
)
from pytest_aienergyscore.report.gate_table import VERDICT_COLUMNS
from pytest_aienergyscore.report.table import QUALITY_NOTE, RESULT_COLUMNS
from tests.support.quality_records import quality, scored_record

BENCH = """
def test_one(energy_meter):
    energy_meter.set(model="org/one", task="text_classification")
    with energy_meter.measure("forward", samples=8):
        sum(i * i for i in range(200_000))
"""


def _record(nodeid: str, per_rep_wh: list[float], samples: int | None = 1000) -> Record:
    phases = []
    for repetition, wh in enumerate(per_rep_wh):
        device = DeviceEnergy("cuda:0", "gpu", wh * 3600.0, "measured", "nvml")
        phases.append(
            Phase("forward", Measurement("forward", "nvml", "measured", 10.0, (device,)), samples, None, repetition)
        )
    return Record(nodeid, "pytorch", model="org/m", task="text_classification", phases=phases)


def test_custom_smaller_is_better_has_one_entry_per_benchmark_with_unit_and_range() -> None:
    entries = custom_smaller_is_better([_record("a.py::test_a", [1.0, 1.2, 0.8]), _record("b.py::test_b", [2.0], None)])
    first, second = entries
    assert first["name"] == "a.py::test_a" and first["unit"] == UNIT_PER_1K
    assert first["value"] == pytest.approx(1.0) and first["range"] == "± 0.2"
    assert "gpu/nvml" in first["extra"] and "3 repetition(s)" in first["extra"]
    assert second["unit"] == UNIT_TOTAL and second["value"] == pytest.approx(2.0) and "range" not in second
    assert set(first) == {"name", "unit", "value", "range", "extra"}


def test_bencher_bmf_gives_each_benchmark_its_measures_and_bounds() -> None:
    document = bencher_bmf([_record("a.py::test_a", [1.0, 1.2, 0.8]), _record("b.py::test_b", [2.0], None)])
    a = document["a.py::test_a"]
    assert a[BMF_PER_1K] == pytest.approx({"value": 1.0, "lower_value": 0.8, "upper_value": 1.2})
    assert a[BMF_TOTAL] == pytest.approx({"value": 1.0})
    assert document["b.py::test_b"] == {BMF_TOTAL: pytest.approx({"value": 2.0})}
    assert all(isinstance(m["value"], float) for measures in document.values() for m in measures.values())


def test_pytest_benchmark_json_has_its_shape_with_energy_statistics() -> None:
    document = pytest_benchmark_json([_record("a.py::test_a", [1.0, 1.2, 0.8])], {"GITHUB_SHA": "abc123"})
    assert set(document) == {"machine_info", "commit_info", "benchmarks", "datetime", "version"}
    assert document["commit_info"] == {"id": "abc123"}
    [bench] = document["benchmarks"]
    assert bench["fullname"] == "a.py::test_a" and bench["name"] == "test_a" and bench["group"] == "text_classification"
    stats = bench["stats"]
    assert stats["rounds"] == 3 and stats["mean"] == pytest.approx(1.0) and stats["min"] == pytest.approx(0.8)
    assert stats["stddev"] == pytest.approx(0.2) and stats["median"] == pytest.approx(1.0)
    assert stats["data"] == pytest.approx([1.0, 1.2, 0.8]) and stats["ops"] == pytest.approx(1.0)
    assert {"q1", "q3", "iqr", "ld15iqr", "hd15iqr", "outliers", "total", "iterations"} <= set(stats)
    assert bench["extra_info"]["unit"] == UNIT_PER_1K and bench["extra_info"]["meter"] == "nvml"


def test_markdown_summary_has_the_results_and_the_gate() -> None:
    record = _record("a.py::test_a|pipe", [1.3])
    verdict = compare_entry(
        record.nodeid, benchmark_entry(record), benchmark_entry(_record("x", [1.0])), GateSettings(10)
    )
    from pytest_aienergyscore.gate.verdicts import GateOutcome

    text = markdown_summary([record], GateOutcome([verdict], GateSettings(10)), "2026-01-01")
    assert text.startswith("## AI Energy Score: 2026-01-01")
    assert "| a.py::test_a\\|pipe | gpu/nvml |" in text
    assert "### Energy gate: FAILED" in text and "+30.0%" in text and "regression (threshold: no noise estimate" in text


def test_junit_properties_name_figure_meter_and_kind() -> None:
    properties = dict(junit_properties(_record("a.py::test_a", [2.0])))
    assert properties["energy_total_wh"] == "2" and properties["energy_wh_per_1000_queries"] == "2"
    assert properties["energy_meter"] == "nvml" and properties["energy_device"] == "gpu"
    assert properties["energy_kind"] == "measured"


def test_a_session_writes_every_export_and_appends_the_step_summary(
    bench: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    step_summary = bench.path / "step_summary.md"
    step_summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    bench.makepyfile(test_one=BENCH)
    result = bench.runpytest("-p", "no:cacheprovider", "--energy-json=out/energy.json", "--junitxml=junit.xml")
    result.assert_outcomes(passed=1)

    text = step_summary.read_text()
    assert text.startswith("earlier step\n## AI Energy Score: ")
    assert "| test_one.py::test_one | cpu/estimate |" in text and "_estimate:" in text

    document = json.loads((bench.path / "out" / "energy.json").read_text())
    [entry] = document["benchmarks"]
    assert entry["fullname"] == "test_one.py::test_one" and entry["extra_info"]["energy_kind"] == "estimate"

    session = next(p for p in (bench.path / "results").iterdir() if p.is_dir())
    [custom] = json.loads((session / "github-action-benchmark.json").read_text())
    assert custom["name"] == "test_one.py::test_one" and custom["unit"] == UNIT_PER_1K and custom["value"] > 0
    bmf = json.loads((session / "bencher-bmf.json").read_text())
    assert bmf["test_one.py::test_one"][BMF_PER_1K]["value"] == pytest.approx(custom["value"])

    properties = {p.get("name"): p.get("value") for p in ET.parse(bench.path / "junit.xml").iter("property")}
    assert properties["energy_meter"] == "estimate" and properties["energy_device"] == "cpu"
    assert float(properties["energy_wh_per_1000_queries"]) == pytest.approx(custom["value"], rel=1e-4)
    assert "exports:" in "\n".join(result.outlines)


def test_energy_per_round_goes_into_pytest_benchmark_extra_info(bench: pytest.Pytester, tmp_path: Path) -> None:
    bench.makepyfile(
        test_bm="""
        def burn():
            return sum(i * i for i in range(20_000))

        def test_bm(energy_meter, benchmark):
            energy_meter.set(model="org/bm", task="text_classification")
            with energy_meter.measure("forward", samples=4):
                benchmark.pedantic(burn, rounds=4, iterations=1)
        """
    )
    target = tmp_path / "bm.json"
    bench.runpytest("-p", "no:cacheprovider", f"--benchmark-json={target}").assert_outcomes(passed=1)
    [entry] = json.loads(target.read_text())["benchmarks"]
    info = entry["extra_info"]
    assert info["energy_rounds"] == 4 and info["energy_wh"] > 0
    assert info["energy_wh_per_round"] == pytest.approx(info["energy_wh"] / 4)
    assert info["energy_meter"] == "estimate" and info["energy_kind"] == "estimate"


# -- the step summary as GitHub reads it ------------------------------------------------------------------------------

TWO_BENCHMARKS = """
def test_one(energy_meter):
    energy_meter.set(model="org/one", task="text_classification")
    with energy_meter.measure("forward", samples=8):
        sum(i * i for i in range(200_000))

def test_two(energy_meter):
    energy_meter.set(model="org/two", task="text_classification")
    with energy_meter.measure("forward", samples=8):
        sum(i * i for i in range(200_000))
    assert False, "the model answered wrongly"
"""


def markdown_tables(text: str) -> list[list[list[str]]]:
    """Every table a GFM parser (markdown-it-py, as GitHub's tables behave) finds in ``text``: rows of cell texts,
    the header first. The parser keeps only as many cells per row as the header has, as GitHub does: a cell too many
    is not an error there, it is silently gone, which is why the tests compare cell contents, not only counts."""
    tables: list[list[list[str]]] = []
    in_cell = False
    for token in MarkdownIt("commonmark").enable("table").parse(text):
        if token.type == "table_open":
            tables.append([])
        elif token.type == "tr_open":
            tables[-1].append([])
        elif token.type in ("th_open", "td_open"):
            in_cell = True
        elif token.type == "inline" and in_cell:
            tables[-1][-1].append(token.content)
            in_cell = False
    return tables


def _assert_rows_as_wide_as_the_header(table: list[list[str]], headers: list[str]) -> None:
    assert table[0] == headers
    assert all(len(row) == len(headers) for row in table[1:])


def test_the_step_summary_of_a_real_session_keeps_every_cell_under_its_header_on_github(
    bench: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench.makepyfile(test_two=TWO_BENCHMARKS)
    bench.runpytest("-p", "no:cacheprovider", "--energy-save-baseline=base.json").assert_outcomes(passed=1, failed=1)
    step_summary = bench.path / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    bench.runpytest("-p", "no:cacheprovider", "--energy-baseline=base.json").assert_outcomes(passed=1, failed=1)

    results, gate = markdown_tables(step_summary.read_text())
    _assert_rows_as_wide_as_the_header(results, [column.header for column in RESULT_COLUMNS])
    by_id = {row[0]: row for row in results[1:]}
    assert set(by_id) == {"test_two.py::test_one", "test_two.py::test_two"}
    assert by_id["test_two.py::test_one"][1] == "cpu/estimate"
    one, two = by_id["test_two.py::test_one"][-1], by_id["test_two.py::test_two"][-1]  # the notes column
    assert one.startswith("estimate, ") and one.endswith(", not comparable") and "failed" not in one
    assert two.startswith("estimate, failed, ") and two.endswith(", not comparable")

    _assert_rows_as_wide_as_the_header(gate, [column.header for column in VERDICT_COLUMNS])
    verdicts = {row[0]: row[-1] for row in gate[1:]}
    assert "test_two.py::test_one" in verdicts and all(verdicts.values())


def test_the_step_summary_keeps_a_comparable_row_apart_from_a_not_comparable_one() -> None:
    comparable, scaled = _record("a.py::test_a|pipe", [1.3]), _record("b.py::test_b", [1.0], samples=8)
    verdict = compare_entry(
        comparable.nodeid, benchmark_entry(comparable), benchmark_entry(_record("x", [1.0])), GateSettings(10)
    )
    from pytest_aienergyscore.gate.verdicts import GateOutcome

    results, gate = markdown_tables(
        markdown_summary([comparable, scaled], GateOutcome([verdict], GateSettings(10)), "t")
    )
    _assert_rows_as_wide_as_the_header(results, [column.header for column in RESULT_COLUMNS])
    assert [(row[0], row[-1]) for row in results[1:]] == [
        ("a.py::test_a|pipe", "ok"),
        ("b.py::test_b", "not comparable"),
    ]
    _assert_rows_as_wide_as_the_header(gate, [column.header for column in VERDICT_COLUMNS])
    assert gate[1][0] == "a.py::test_a|pipe" and gate[1][-1].startswith("regression")


# -- exports at fixed paths and carbon, in a real session --------------------------------------------------------------

FIXED_NAMES = ("summary.json", "github-action-benchmark.json", "bencher-bmf.json", "gate.json")


def _session_folder(root: Path) -> Path:
    return max((p for p in (root / "results").iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime_ns)


def test_exports_are_also_written_under_fixed_names_equal_to_the_session_folders(bench: pytest.Pytester) -> None:
    bench.makepyfile(test_one=BENCH)
    bench.runpytest("-p", "no:cacheprovider", "--energy-save-baseline=base.json").assert_outcomes(passed=1)
    result = bench.runpytest("-p", "no:cacheprovider", "--energy-baseline=base.json", "--energy-exports=ci/energy")
    result.assert_outcomes(passed=1)
    fixed, session = bench.path / "ci" / "energy", _session_folder(bench.path)
    assert set(FIXED_NAMES) <= {p.name for p in fixed.iterdir()}  # report.html is the HTML report's
    for name in FIXED_NAMES:
        assert (fixed / name).read_bytes() == (session / name).read_bytes(), name
    assert json.loads((fixed / "summary.json").read_text())["benchmarks"][0]["test"] == "test_one.py::test_one"
    assert str(fixed / "bencher-bmf.json") in "\n".join(result.outlines)  # listed with the exports


def test_a_session_without_a_gate_leaves_no_earlier_gate_json_at_the_fixed_path(bench: pytest.Pytester) -> None:
    bench.makepyfile(test_one=BENCH)
    (bench.path / "ci").mkdir()
    (bench.path / "ci" / "gate.json").write_text('{"failed": true}\n')  # an earlier session's verdicts
    bench.runpytest("-p", "no:cacheprovider", "--energy-exports=ci").assert_outcomes(passed=1)
    names = {p.name for p in (bench.path / "ci").iterdir()}
    assert set(FIXED_NAMES[:3]) <= names and "gate.json" not in names


def test_an_exports_folder_that_is_a_file_is_one_usage_error_before_anything_is_measured(
    bench: pytest.Pytester,
) -> None:
    bench.makepyfile(test_one=BENCH)
    (bench.path / "ci").write_text("not a folder")
    result = bench.runpytest("-p", "no:cacheprovider", "--energy-exports=ci")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if line.startswith("ERROR:")]
    ci = bench.path / "ci"
    assert errors == [f"ERROR: --energy-exports (command line): {ci} cannot be a folder: {ci} is a file"]
    assert "Traceback" not in "\n".join(result.errlines + result.outlines)
    assert (bench.path / "ci").read_text() == "not a folder"


def test_a_file_that_appears_in_the_exports_folders_place_during_the_session_is_one_line(tmp_path: Path) -> None:
    """Checked before the run, but a file can still take the folder's place later: one line, the session's own
    files untouched."""
    from pytest_aienergyscore.records.atomic import WriteFailed
    from pytest_aienergyscore.report.exports import write_fixed_exports

    session = tmp_path / "results" / "s"
    session.mkdir(parents=True)
    (session / "bencher-bmf.json").write_text("{}")
    (tmp_path / "ci").write_text("not a folder")
    with pytest.raises(WriteFailed) as failed:
        write_fixed_exports(session, tmp_path / "ci")
    assert "a file is in the way of --energy-exports's folder" in str(failed.value)
    assert (session / "bencher-bmf.json").read_text() == "{}"


def test_a_carbon_intensity_adds_grams_of_co2e_to_every_file_and_a_note_under_the_table(bench: pytest.Pytester) -> None:
    bench.makepyfile(test_one=BENCH)
    result = bench.runpytest("-p", "no:cacheprovider", "--energy-carbon-intensity=400")
    result.assert_outcomes(passed=1)
    note = (
        "CO2e at 400 g/kWh (given with --energy-carbon-intensity): grams beside each energy figure in summary.json/csv"
    )
    assert note in result.outlines
    session = _session_folder(bench.path)
    [row] = json.loads((session / "summary.json").read_text())["benchmarks"]
    assert row["co2e_g"] == pytest.approx(row["total_wh"] * 0.4) and row["carbon_intensity_g_per_kwh"] == 400.0
    assert row["co2e_g_per_1000_queries"] == pytest.approx(row["wh_per_1000_queries"] * 0.4)
    with open(session / "summary.csv", newline="") as fh:
        [csv_row] = list(csv.DictReader(fh))
    assert float(csv_row["co2e_g"]) == pytest.approx(row["co2e_g"]) and csv_row["carbon_intensity_g_per_kwh"] == "400.0"
    [run_summary] = session.glob("*/GPU_ENERGY_SUMMARY.json")
    carbon = json.loads(run_summary.read_text())["carbon"]
    assert carbon["co2e_g"] == pytest.approx(row["co2e_g"]) and carbon["energy_scope"] == "cpu"
    assert carbon["carbon_intensity_source"] == "user-given (--energy-carbon-intensity)"
    assert carbon["phases_co2e_g"]["forward"] == pytest.approx(row["forward_wh"] * 0.4)


def test_the_job_summary_has_the_quality_column_and_says_what_a_dash_there_means() -> None:
    scored = scored_record("org/a", 1.0, quality("accuracy", 0.92, rate=True))
    unscored = scored_record("org/b", 1.0, no_quality("no references"))
    lines = markdown_summary([scored, unscored], None, "t").splitlines()
    [header] = [line for line in lines if line.startswith("| benchmark")]
    assert "| quality |" in header
    rows = [line for line in lines if line.startswith("| test_q.py")]
    assert "| acc 0.92 |" in rows[0] and "| - |" in rows[1]
    assert f"_{QUALITY_NOTE}_" in lines
