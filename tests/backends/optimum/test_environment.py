"""The optimum environment: found, checked once, and the environment the worker starts with.

The worker runs in another python (optimum-benchmark's) that sees our package through a one-link folder on its
PYTHONPATH and nothing else of this environment; these tests hold that link and the worker's imports to it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import pytest_aienergyscore
from pytest_aienergyscore.backends import BackendError
from pytest_aienergyscore.backends.optimum.environment import check_environment, worker_env
from pytest_aienergyscore.backends.optimum.launch import WORKER_MODULE
from pytest_aienergyscore.config.settings import build_settings

pytestmark = pytest.mark.optimum


def test_missing_or_broken_environment_says_how_to_create_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    hint = "make it with `aienergyscore setup optimum` or point --optimum-python at one"
    with pytest.raises(BackendError, match="optimum environment not found") as missing:
        check_environment(None)
    expected = tmp_path / "empty-cache" / "pytest-aienergyscore" / "optimum-env" / "bin" / "python"
    assert str(missing.value) == (
        "optimum environment not found (no --optimum-python, no AIENERGYSCORE_OPTIMUM_PYTHON and nothing at "
        f"{expected}); run `aienergyscore setup optimum` to make it"
    )
    with pytest.raises(BackendError, match=f"optimum environment {tmp_path / 'nope'} not found") as absent:
        check_environment(tmp_path / "nope")
    assert hint in str(absent.value)
    # this test's own python is a real interpreter without optimum-benchmark: a broken optimum environment
    with pytest.raises(BackendError, match=r"is broken \(optimum-benchmark is not installed") as broken:
        check_environment(Path(sys.executable))
    assert hint in str(broken.value)


def test_without_a_path_the_environment_is_looked_for_in_the_plugins_cache_whatever_the_rootdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where `aienergyscore setup optimum` puts it; a project's own .venv-optimum is no longer looked for."""
    (tmp_path / ".venv-optimum" / "bin").mkdir(parents=True)
    (tmp_path / ".venv-optimum" / "bin" / "python").symlink_to(sys.executable)
    assert build_settings({}, {}, {}, cwd=tmp_path, rootdir=tmp_path).optimum_python is None
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    python = tmp_path / "cache" / "pytest-aienergyscore" / "optimum-env" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.symlink_to(sys.executable)  # found, then probed: this python lacks optimum-benchmark
    with pytest.raises(BackendError, match=rf"optimum environment {python} is broken \(optimum-benchmark is not"):
        check_environment(None)


def test_a_given_environment_is_taken_relative_to_the_cwd_or_from_the_ini_file_to_the_rootdir(tmp_path: Path) -> None:
    given = build_settings({"energy_optimum_python": "env/bin/python"}, {}, {}, cwd=tmp_path / "c", rootdir=tmp_path)
    assert given.optimum_python == tmp_path / "c" / "env" / "bin" / "python"
    ini = build_settings({}, {"energy_optimum_python": "i/bin/python"}, {}, cwd=tmp_path / "c", rootdir=tmp_path)
    assert ini.optimum_python == tmp_path / "i" / "bin" / "python"


def test_the_workers_pythonpath_holds_only_a_link_to_the_plugin_package(tmp_path: Path) -> None:
    env, _ = worker_env(tmp_path, local_dataset=False)
    shim = Path(env["PYTHONPATH"])
    assert [entry.name for entry in shim.iterdir()] == ["pytest_aienergyscore"]
    assert (shim / "pytest_aienergyscore").resolve() == Path(pytest_aienergyscore.__file__).resolve().parent


WORKER_IMPORTS = f"""
import sys
import {WORKER_MODULE}
print(",".join(sorted({{name.split(".")[0] for name in sys.modules}} - set(sys.stdlib_module_names))))
"""


def test_the_worker_imports_with_the_standard_library_alone_through_that_link(tmp_path: Path) -> None:
    """-S leaves site-packages out: what the worker imports at module level must be the standard library and ours,
    since optimum's python has none of this environment's packages (the chain includes the package __init__ files)."""
    env, _ = worker_env(tmp_path, local_dataset=False)
    done = subprocess.run(
        [sys.executable, "-S", "-s", "-c", WORKER_IMPORTS], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "__main__,pytest_aienergyscore"
