"""The optimum environment: finding its python, checking it once, and the environment the worker starts with.

optimum-benchmark 0.6.0 needs ``transformers<5`` and codecarbon, which conflict with the pytorch backend's stack, so
it lives in its own virtual environment, made once per machine by ``aienergyscore setup optimum`` in the plugin's
cache (:func:`default_python`), so that every project finds it whatever its rootdir. A missing or broken one must be
a single line naming that command, found before any benchmark starts, and the worker must see our package and
nothing else of this environment, so that it imports that environment's packages, never ours.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from pytest_aienergyscore.backends.base import BackendError
from pytest_aienergyscore.config.cache import environment_dir

OPTIMUM_BENCHMARK_VERSION = "0.6.0"
ENVIRONMENT_NAME = "optimum-env"
SETUP_COMMAND = "aienergyscore setup optimum"
SETUP_HINT = f"make it with `{SETUP_COMMAND}` or point --optimum-python at one"


def default_python() -> Path:
    """Where ``aienergyscore setup optimum`` puts the environment's python (it may not exist yet)."""
    return environment_dir(ENVIRONMENT_NAME) / "bin" / "python"


_checked_environments: dict[str, str | None] = {}

_PROBE = """
import sys
from importlib import metadata
problems = []
def version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        problems.append(name + " is not installed")
        return None
found = version("optimum-benchmark")
if found and found != sys.argv[1]:
    problems.append("optimum-benchmark " + found + " instead of " + sys.argv[1])
found = version("transformers")
if found and int(found.split(".")[0]) >= 5:
    problems.append("transformers " + found + " (optimum-benchmark needs transformers<5)")
for name in ("codecarbon", "pillow", "datasets", "torch"):
    version(name)
print("; ".join(problems) or "ok")
"""


def check_environment(python: Path | None) -> Path:
    """The optimum environment's python, checked once per session: missing or broken is one line saying how to fix."""
    if python is None:
        python = default_python()
        if not python.exists():
            raise BackendError(
                f"optimum environment not found (no --optimum-python, no AIENERGYSCORE_OPTIMUM_PYTHON and nothing at "
                f"{python}); run `{SETUP_COMMAND}` to make it"
            )
    if not python.exists():
        raise BackendError(f"optimum environment {python} not found (no such file); {SETUP_HINT}")
    key = str(python)
    if key not in _checked_environments:
        _checked_environments[key] = probe_environment(python)
    problem = _checked_environments[key]
    if problem:
        raise BackendError(f"optimum environment {python} is broken ({problem}); {SETUP_HINT}")
    return python


def probe_environment(python: Path) -> str | None:
    """Package metadata only (no torch import): about 50 ms."""
    try:
        done = subprocess.run(
            [str(python), "-s", "-c", _PROBE, OPTIMUM_BENCHMARK_VERSION],
            capture_output=True,
            text=True,
            timeout=120,
            env=clean_env(),
        )
    except (OSError, subprocess.SubprocessError) as err:
        return f"cannot run it: {err}"
    text = (done.stdout.strip() or done.stderr.strip() or "no answer").splitlines()[-1]
    if done.returncode != 0:
        return f"it exited with status {done.returncode}: {text}"
    return None if text == "ok" else text


def clean_env() -> dict[str, str]:
    """This process's environment without what would make another python import our packages instead of its own."""
    drop = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH", "VIRTUAL_ENV", "PYTEST_ADDOPTS")
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("PYTEST_")}


def worker_env(run_dir: Path, local_dataset: bool) -> tuple[dict[str, str], bool]:
    """The worker's environment and whether it must block the network (the Hub is offline here)."""
    env = clean_env()
    shim = run_dir / ".pythonpath"
    shim.mkdir(exist_ok=True)
    package = Path(__file__).resolve().parents[2]
    link = shim / package.name
    if not link.exists():
        link.symlink_to(package, target_is_directory=True)
    env["PYTHONPATH"] = str(shim)  # only our package, never the main environment's site-packages
    env["PYTHONUNBUFFERED"] = "1"
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false")
    if offline:
        env.update(HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    if local_dataset:  # the Arrow cache of a one-run folder belongs to that run
        env["HF_DATASETS_CACHE"] = str(run_dir / ".datasets-cache")
    return env, offline
