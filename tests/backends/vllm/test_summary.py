"""What a phase's requests add up to: the steady-state window counts only its share of each request."""

from __future__ import annotations

import pytest

from pytest_aienergyscore.backends.vllm.load import Load, SteadyState
from pytest_aienergyscore.backends.vllm.stream import Result
from pytest_aienergyscore.backends.vllm.summary import steady_state_details


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
