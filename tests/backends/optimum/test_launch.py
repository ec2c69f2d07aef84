"""Starting the optimum worker and reading its failure: one line naming the exception and where the whole log is.

The real worker runs in the end-to-end tests (test_backend.py); stopping it with pytest is in
tests/end_to_end/test_hostile_input.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_aienergyscore.backends.optimum.launch import last_meaningful_line, worker_failure

pytestmark = pytest.mark.optimum


HYDRA_STYLE_LOG = """[2026-11-28 12:00:00][backend][INFO] - + Loading model
Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/optimum_benchmark/cli.py", line 97, in main
    report = Benchmark.launch(config)
             ^^^^^^^^^^^^^^^^^^^^^^^^
OSError: Error no file named model.safetensors found in directory /models/broken.

Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.
"""


def test_the_last_meaningful_log_line_is_the_exception() -> None:
    assert last_meaningful_line(HYDRA_STYLE_LOG) == (
        "OSError: Error no file named model.safetensors found in directory /models/broken."
    )


def test_worker_failure_is_one_line_naming_the_log(tmp_path: Path) -> None:
    (tmp_path / "optimum.log").write_text(HYDRA_STYLE_LOG)
    error = worker_failure(1, tmp_path, Path("/env/bin/python"))
    assert str(error) == (
        "optimum-benchmark failed: OSError: Error no file named model.safetensors found in directory /models/broken. "
        f"(log: {tmp_path / 'optimum.log'})"
    )
    (tmp_path / "worker_error.json").write_text(json.dumps({"type": "TypeError", "message": "bad\nsecond line"}))
    assert "failed: TypeError: bad (log:" in str(worker_failure(1, tmp_path, Path("/env/bin/python")))
    assert "killed by SIGKILL (out of memory?)" in str(worker_failure(-9, tmp_path, Path("/env/bin/python")))
    broken = str(worker_failure(3, tmp_path, Path("/env/bin/python")))
    assert broken.startswith("optimum environment /env/bin/python is broken (TypeError: bad)")
