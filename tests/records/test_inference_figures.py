"""The figures inference people compare beside Wh per 1,000 queries (J per output token, output tokens per J, images
per Wh, latency) and grams of CO2e: hand-computed values, the scope each divides, and where they appear."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_aienergyscore.records.figures import DeviceEnergy, Measurement
from pytest_aienergyscore.records.inference_figures import (
    CARBON_INTENSITY_KEY,
    carbon_figures,
    carbon_note,
    inference_figures,
    output_tokens,
)
from pytest_aienergyscore.records.record import Phase, Record
from pytest_aienergyscore.report.exports import bencher_bmf, custom_smaller_is_better, markdown_summary
from pytest_aienergyscore.report.files import SUMMARY_COLUMNS, energy_summary, summary_row
from pytest_aienergyscore.report.table import TABLE_WIDTH, render, result_columns

MODEL_150 = "org-with-a-long-name/" + "m" * 120 + "-instruct-v1"


def _window(name: str, wh: float, scope: str = "gpu", meter: str = "nvml", **details: Any) -> Measurement:
    kind = "estimate" if meter == "estimate" else "measured"
    device = DeviceEnergy("cuda:0" if scope == "gpu" else "cpu", scope, wh * 3600.0, kind, meter)
    return Measurement(name, meter, kind, 10.0, (device,))


def generative(
    prefill_wh: float = 0.1,
    decode_wh: float = 0.4,
    generated: int = 1000,
    samples: int = 100,
    scope: str = "gpu",
    meter: str = "nvml",
    repetition: int = 0,
    **decode_details: Any,
) -> list[Phase]:
    """A prefill and a decode phase as the runner records them: decode's details carry the generation pass's tokens."""
    details = {"generated_tokens": generated, **decode_details}
    return [
        Phase("prefill", _window("prefill", prefill_wh, scope, meter), samples, 500, repetition),
        Phase("decode", _window("decode", decode_wh, scope, meter), samples, generated - samples, repetition, details),
    ]


def record_of(phases: list[Phase], task: str = "text_generation", **fields: Any) -> Record:
    return Record("bench.py::test_gen", "pytorch", model="org/m", task=task, phases=phases, queries=100, **fields)


def test_half_a_wh_over_1000_output_tokens_is_1_8_joules_per_token() -> None:
    figures = inference_figures(record_of(generative(0.1, 0.4, generated=1000)))
    assert figures["output_tokens"] == 1000
    assert figures["joules_per_output_token"] == pytest.approx(1.8)  # 0.5 Wh = 1,800 J over 1,000 tokens
    assert figures["output_tokens_per_joule"] == pytest.approx(1000 / 1800)
    assert figures["energy_scope"] == "gpu" and figures["meter"] == "nvml" and figures["energy_kind"] == "measured"
    assert "generated_tokens of the decode phase" in figures["output_tokens_counted"]
    assert figures["images"] is None and figures["images_per_wh"] is None and figures["latency"] is None


def test_output_tokens_are_the_generation_pass_s_not_decode_s_tokens_without_the_first() -> None:
    """decode's own tokens leave out each sample's first token (it belongs to prefill); the output is all of them."""
    record = record_of(generative(generated=1000, samples=100))
    assert record.phase_tokens("decode") == 900 and output_tokens(record) == 1000


def test_repetitions_average_the_tokens_and_the_energy_alike() -> None:
    phases = generative(0.1, 0.4, generated=1000) + generative(0.2, 0.5, generated=1000, repetition=1)
    figures = inference_figures(record_of(phases))
    assert figures["output_tokens"] == 1000
    assert figures["joules_per_output_token"] == pytest.approx(0.6 * 3600 / 1000)  # mean total 0.6 Wh


def test_a_cpu_estimate_says_it_divides_the_cpu_estimate() -> None:
    figures = inference_figures(record_of(generative(0.001, 0.002, scope="cpu", meter="estimate")))
    assert figures["energy_scope"] == "cpu" and figures["meter"] == "estimate" and figures["energy_kind"] == "estimate"
    assert figures["joules_per_output_token"] == pytest.approx(0.003 * 3600 / 1000)


def test_images_per_wh_divides_the_images_the_call_counted_by_the_whole_energy() -> None:
    phases = [
        Phase("preprocess", _window("preprocess", 0.5), 10),
        Phase("call", _window("call", 1.5), 10, None, 0, {"images": 10}),
    ]
    figures = inference_figures(record_of(phases, task="image_generation"))
    assert figures["images"] == 10 and figures["images_per_wh"] == pytest.approx(5.0)  # 10 images over 2 Wh
    assert figures["joules_per_output_token"] is None


def test_classification_and_partial_work_have_no_per_output_figure() -> None:
    forward = record_of([Phase("forward", _window("forward", 1.0), 100)], task="text_classification")
    assert inference_figures(forward)["joules_per_output_token"] is None
    failed = record_of(generative(), outcome="failed")
    assert inference_figures(failed)["joules_per_output_token"] is None  # part of the work would read as cheap tokens


def test_latency_comes_from_the_generation_pass_and_throughput_is_worked_out_for_older_records() -> None:
    spread = {"mean": 0.2, "p50": 0.1, "p90": 0.3, "p99": 0.5}
    phases = generative(ttft_s=spread, latency_s=spread, wall_s=4.0, completion_tokens=1000, requests_per_s=25.0)
    latency = inference_figures(record_of(phases))["latency"]
    assert latency["ttft_s"] == spread and latency["latency_s"] == spread
    assert latency["output_tokens_per_s"] == pytest.approx(250.0) and latency["requests_per_s"] == 25.0


# -- carbon ---------------------------------------------------------------------------------------------------------


def test_carbon_is_energy_times_the_given_intensity_beside_each_figure() -> None:
    record = record_of(generative(0.1, 0.4), metadata={CARBON_INTENSITY_KEY: 400.0})
    carbon = carbon_figures(record)
    assert carbon is not None
    assert carbon["co2e_g"] == pytest.approx(0.2)  # 0.5 Wh = 0.0005 kWh x 400 g/kWh
    assert carbon["co2e_g_per_1000_queries"] == pytest.approx(2.0)  # 5 Wh per 1,000 queries
    assert carbon["phases_co2e_g"] == pytest.approx({"prefill": 0.04, "decode": 0.16})
    assert carbon["carbon_intensity_g_per_kwh"] == 400.0 and "user-given" in carbon["carbon_intensity_source"]
    assert carbon["energy_scope"] == "gpu"


def test_without_an_intensity_there_is_no_carbon_and_no_note() -> None:
    record = record_of(generative())
    assert carbon_figures(record) is None and carbon_note([record]) is None
    assert not any("CO2e" in line for line in render([record]))


def test_the_note_under_the_table_names_the_intensity_and_where_it_came_from() -> None:
    record = record_of(generative(), metadata={CARBON_INTENSITY_KEY: 400.0})
    note = (
        "CO2e at 400 g/kWh (given with --energy-carbon-intensity): grams beside each energy figure in summary.json/csv"
    )
    assert carbon_note([record]) == note and render([record])[-1] == note
    assert f"_{note}_" in markdown_summary([record], None, "t")


# -- where the figures appear -----------------------------------------------------------------------------------------


def test_the_run_summary_and_the_session_row_carry_the_figures_under_our_own_keys() -> None:
    record = record_of(generative(0.1, 0.4), metadata={CARBON_INTENSITY_KEY: 400.0})
    summary = energy_summary(record)
    assert list(summary)[:6] == ["units", "total", "format", "preprocess_wh", "prefill_wh", "decode_wh"]  # theirs first
    assert summary["inference_figures"]["joules_per_output_token"] == pytest.approx(1.8)
    assert summary["carbon"]["co2e_g"] == pytest.approx(0.2)
    row = summary_row(record, None, None, summary)
    assert set(SUMMARY_COLUMNS) <= set(row)
    assert row["joules_per_output_token"] == pytest.approx(1.8) and row["co2e_g"] == pytest.approx(0.2)
    assert row["carbon_intensity_g_per_kwh"] == 400.0 and row["device"] == "gpu"


def test_the_exports_carry_the_figures_as_extra_measures_and_labels() -> None:
    record = record_of(generative(0.1, 0.4), metadata={CARBON_INTENSITY_KEY: 400.0})
    measures = bencher_bmf([record])[record.nodeid]
    assert measures["energy-j-per-output-token"] == pytest.approx({"value": 1.8})
    assert measures["output-tokens-per-joule"] == pytest.approx({"value": 1000 / 1800})
    assert measures["co2e-g"] == pytest.approx({"value": 0.2})
    [entry] = custom_smaller_is_better([record])
    assert "1.8 J/output token" in entry["extra"] and "0.2 g CO2e at 400 g/kWh (user-given)" in entry["extra"]


def test_the_table_shows_joules_per_token_for_generative_work_only() -> None:
    classification = record_of([Phase("forward", _window("forward", 1.0), 100)], task="text_classification")
    assert "per output" not in render([classification])[0]
    both = [record_of(generative(0.1, 0.4)), classification]
    headers = [column.header for column in result_columns(both)]
    assert headers[headers.index("Wh/1k queries") + 1] == "per output"
    lines = render(both)
    assert "per output" in lines[0] and "1.800 J/tok" in lines[2]
    assert lines[3].split()[5] == "-"  # benchmark, device/meter, phase, total, per 1k, then no per-output figure


def test_the_table_with_the_per_output_column_and_a_150_character_model_still_fits_120_columns() -> None:
    nodeid = f"bench_models.py::test_energy[{MODEL_150}-text_generation]"
    record = Record(nodeid, "pytorch", model=MODEL_150, task="text_generation", phases=generative(), queries=100)
    failed = record_of(generative(scope="cpu", meter="estimate"), outcome="failed")  # notes to wrap as well
    lines = render([record, failed])
    assert all(len(line) <= TABLE_WIDTH for line in lines), "\n".join(lines)
    assert "1.800 J/tok" in "\n".join(lines)
