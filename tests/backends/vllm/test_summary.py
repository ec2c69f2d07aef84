"""What a phase's requests add up to: the steady-state window counts only its share of each request."""

from __future__ import annotations

import pytest

from pytest_aienergyscore.backends.vllm.load import Load, SteadyState
from pytest_aienergyscore.backends.vllm.stream import Result
from pytest_aienergyscore.backends.vllm.summary import phase_details, steady_state_details


def test_steady_state_counts_only_the_window_share_of_each_request() -> None:
    load = Load(3, 2, None, SteadyState("s"))
    load.steady.started, load.steady.ended = 10.0, 20.0
    results = [
        Result(True, 8.0, 12.0, first_token=9.0, completion_tokens=30),  # 2 of its 3 token-seconds inside
        Result(True, 11.0, 19.0, first_token=11.0, completion_tokens=10),  # wholly inside
        Result(True, 15.0, 25.0, first_token=15.0, completion_tokens=10),  # half inside, ends after
    ]
    details = steady_state_details(load, results)
    assert details is not None and details["reached"] is True
    assert details["requests_completed"] == 2 and details["tokens"] == pytest.approx(20 + 10 + 5)
    assert details["energy_source"] is None and "no meter" in details["why_not_metered"]
    assert steady_state_details(Load(3, 1, None, SteadyState("s")), results) is None  # the protocol: one at a time


def test_a_phase_gives_nearest_rank_percentiles_and_its_throughput_in_tokens_and_requests_per_second() -> None:
    load = Load(10, 1, None, SteadyState("s"))
    # request i starts at i, answers its first token after (i + 1) / 10 s and ends (i + 1) / 2 s after it started
    load.results = [
        Result(True, float(i), i + (i + 1) / 2, first_token=i + (i + 1) / 10, completion_tokens=20) for i in range(10)
    ]
    details = phase_details(load, wall_s=8.0)
    assert details["ttft_s"] == pytest.approx({"mean": 0.55, "p50": 0.5, "p90": 0.9, "p99": 1.0})
    assert details["latency_s"] == pytest.approx({"mean": 2.75, "p50": 2.5, "p90": 4.5, "p99": 5.0})
    assert details["output_tokens_per_s"] == pytest.approx(200 / 8.0)
    assert details["requests_per_s"] == pytest.approx(10 / 8.0)


def test_failed_requests_count_in_no_latency_and_no_throughput() -> None:
    load = Load(2, 1, None, SteadyState("s"))
    load.results = [Result(True, 0.0, 1.0, first_token=0.5, completion_tokens=10), Result(False, 0.0, 9.0, error="x")]
    details = phase_details(load, wall_s=2.0)
    assert (
        details["latency_s"]["p99"] == 1.0
        and details["output_tokens_per_s"] == 5.0
        and details["requests_per_s"] == 0.5
    )
