"""``aienergyscore setup NAME``: carries out a backend's environment recipe (:mod:`~pytest_aienergyscore.backends.
environments`), once per machine.

Why the steps are what they are:
- torch goes in first, and its pin is stated again with every later install: a bare ``torch`` pulled in by another
  package resolves to a multi-GB CUDA build on a CPU machine (``--torch`` picks another release or a local wheel);
- the environment records its recipe and interpreter in a stamp file written last, so a second run with the same
  recipe checks package metadata (well under a second) and does nothing, and a half-made one is made again;
- a folder that is not a virtual environment this command can rebuild is never deleted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pytest_aienergyscore.backends.environments import DEFAULT_TORCH, Recipe
from pytest_aienergyscore.backends.optimum.environment import clean_env

STAMP = ".aienergyscore-setup.json"


class SetupFailed(Exception):
    """A step failed; the message is one line naming the step and what to do."""


@dataclass
class Setup:
    """One run of the command: the recipe, where, with which interpreter and torch, and how it talks."""

    recipe: Recipe
    path: Path
    python: str = sys.executable
    torch: str = DEFAULT_TORCH
    force: bool = False
    verbose: bool = False
    say: Callable[[str], None] = print
    started: float = field(default_factory=time.monotonic)

    @property
    def env_python(self) -> Path:
        return self.path / "bin" / "python"

    def run(self) -> Path:
        """Make the environment, or find it ready; returns its python."""
        version = _python_version(self.python)
        wanted = self.recipe.signature(self.torch, version)
        if not self.force and self._ready(wanted):
            self.say(f"ready: {self.path} (nothing to do)")
            return self.env_python
        packages, remove = self.recipe.packages, self.recipe.remove
        steps: list[tuple[str, Callable[[], None]]] = [
            (f"virtual environment with Python {version}", lambda: self._create(version)),
            (f"installing {self.torch} first", lambda: self._pip("install", self.torch)),
            (f"installing {' '.join(packages)}", lambda: self._pip("install", self.torch, *packages)),
        ]
        if remove:
            steps.append((f"removing {' '.join(remove)}", lambda: self._pip("uninstall", "-y", *remove)))
        steps.append(("checking the packages and their imports", self._check))
        for number, (title, action) in enumerate(steps, 1):
            step_started = time.monotonic()
            self.say(f"[{number}/{len(steps)}] {title}")
            try:
                action()
            except SetupFailed as err:
                raise SetupFailed(f"step {number}/{len(steps)} ({title}) failed: {err}") from None
            if time.monotonic() - step_started >= 1:
                self.say(f"      done in {time.monotonic() - step_started:.0f} s")
        stamp = self.path / STAMP
        stamp.write_text(json.dumps(wanted, indent=1) + "\n", encoding="utf-8")
        self.say(f"ready: {self.path} (made in {time.monotonic() - self.started:.0f} s)")
        return self.env_python

    def _ready(self, wanted: dict[str, object]) -> bool:
        """The stamp says this recipe and interpreter, and the packages are still there (metadata only)."""
        try:
            stamp = json.loads((self.path / STAMP).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        if stamp != wanted or not self.env_python.exists():
            return False
        check = self.recipe.metadata_check
        return check is None or check(self.env_python) is None

    def _create(self, version: str) -> None:
        """A fresh virtual environment; an old one of this command (or a broken venv) is replaced, anything else is
        refused."""
        if self.path.exists():
            if not (self.path / "pyvenv.cfg").exists() and any(self.path.iterdir()):
                raise SetupFailed(f"{self.path} exists and is not a virtual environment; remove it or pass --path")
            (self.path / STAMP).unlink(missing_ok=True)
            if self.env_python.exists() and _python_version(str(self.env_python)) == version:
                return  # same interpreter: install over it, pip keeps what is already right
            shutil.rmtree(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._call([self.python, "-m", "venv", str(self.path)], "python -m venv")

    def _pip(self, *args: str) -> None:
        quiet = () if self.verbose else ("-q",)
        self._call([str(self.env_python), "-m", "pip", "--disable-pip-version-check", *args, *quiet], "pip")

    def _check(self) -> None:
        check = self.recipe.metadata_check
        problem = check(self.env_python) if check else None
        if problem:
            raise SetupFailed(problem)
        self._call([str(self.env_python), "-s", "-c", self.recipe.imports], "the import check")

    def _call(self, command: list[str], what: str) -> None:
        """Run one command; its output is shown only when it fails (or with --verbose), as the last 20 lines."""
        output = None if self.verbose else subprocess.PIPE
        done = subprocess.run(command, env=clean_env(), text=True, stdout=output, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            for line in (done.stdout or "").splitlines()[-20:]:
                self.say(f"      | {line}")
            raise SetupFailed(f"{what} exited with status {done.returncode} (its last lines are above)")


def _python_version(python: str) -> str:
    """``3.11.7`` of an interpreter; one line naming it when it cannot be run."""
    try:
        done = subprocess.run(
            [python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
            capture_output=True,
            text=True,
            timeout=60,
            env=clean_env(),
        )
    except (OSError, subprocess.SubprocessError) as err:
        raise SetupFailed(f"cannot run the interpreter {python} ({err})") from None
    if done.returncode != 0:
        raise SetupFailed(f"the interpreter {python} exited with status {done.returncode}")
    return done.stdout.strip()
