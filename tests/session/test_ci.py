"""The end of a measuring session: why a session counts as partial (which decides whether a saved baseline is replaced
or only updated). The gate, exports and summary are driven through real sessions in tests/test_plugin.py and
tests/end_to_end/test_data_safety.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pytest_aienergyscore.session.ci import _partial_session


def _session(exitstatus: int = 0, shouldfail: object = False, shouldstop: object = False) -> pytest.Session:
    return SimpleNamespace(exitstatus=exitstatus, shouldfail=shouldfail, shouldstop=shouldstop)  # type: ignore[return-value]


def test_a_session_that_ran_everything_to_its_end_is_complete() -> None:
    assert _partial_session(_session(), deselected=False) is None


@pytest.mark.parametrize(
    ("session", "deselected", "why"),
    [
        (_session(exitstatus=pytest.ExitCode.INTERRUPTED), False, "was interrupted"),
        (_session(shouldfail="stopping after 1 failures"), False, "stopped early (stopping after 1 failures)"),
        (_session(shouldstop=True), False, "stopped early"),
        (_session(), True, "ran a selection of the tests"),
    ],
)
def test_a_partial_session_says_why(session: pytest.Session, deselected: bool, why: str) -> None:
    assert _partial_session(session, deselected) == why
