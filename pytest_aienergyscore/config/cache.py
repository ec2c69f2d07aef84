"""Where the plugin keeps what it makes once per machine: converted models and the environments of its backends.

One folder, ``$XDG_CACHE_HOME/pytest-aienergyscore`` (or ``~/.cache/pytest-aienergyscore``), so that what
``aienergyscore setup`` makes is found from any project's rootdir, and CI can point the whole of it at a kept folder
with one variable.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_FOLDER = "pytest-aienergyscore"


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/pytest-aienergyscore``, else ``~/.cache/pytest-aienergyscore`` (read on every call, so a
    test or a CI job that sets the variable sees it)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / CACHE_FOLDER


def environment_dir(name: str) -> Path:
    """The folder of one of the plugin's own virtual environments (``optimum-env``, ``vllm-cpu-env``)."""
    return cache_root() / name
