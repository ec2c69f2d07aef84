"""Repo-wide pytest settings. The plugin loads through its pytest11 entry point once the package is installed;
from a bare checkout (PYTHONPATH=.), this makes ``pytest`` find it all the same."""

import importlib.util

if importlib.util.find_spec("pytest_aienergyscore") is not None:
    try:
        from importlib.metadata import entry_points

        _installed = any(ep.value == "pytest_aienergyscore.plugin" for ep in entry_points(group="pytest11"))
    except Exception:
        _installed = False
    if not _installed:
        pytest_plugins = ["pytest_aienergyscore.plugin"]
