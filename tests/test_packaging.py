"""What the package declares about itself agrees with what it is: one version, a changelog entry for it, the licence's
text, and Python classifiers that match the requires-python bound CI checks (.ci/package builds and installs it)."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

import pytest_aienergyscore

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]


def test_the_version_has_one_source_the_packages_dunder_version() -> None:
    assert "version" not in PROJECT and "version" in PROJECT["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "pytest_aienergyscore.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", pytest_aienergyscore.__version__)


def test_the_changelog_has_a_section_for_the_current_version() -> None:
    headings = re.findall(r"^## (\S+)", (REPO / "CHANGELOG.md").read_text(encoding="utf-8"), flags=re.M)
    assert headings and headings[0] == pytest_aienergyscore.__version__, headings


def test_the_licence_file_holds_the_text_of_the_licence_pyproject_names() -> None:
    assert PROJECT["license"] == "Apache-2.0" and PROJECT["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text


def test_python_classifiers_run_from_the_requires_python_bound_that_ci_checks() -> None:
    lowest = re.fullmatch(r">=3\.(\d+)", PROJECT["requires-python"])
    assert lowest, PROJECT["requires-python"]
    minors = sorted(
        int(m) for c in PROJECT["classifiers"] for m in re.findall(r"^Programming Language :: Python :: 3\.(\d+)$", c)
    )
    assert minors and minors[0] == int(lowest.group(1)), minors
    assert minors == list(range(minors[0], minors[-1] + 1)), "a gap in the Python classifiers"
    ci_package = (REPO / ".ci" / "package").read_text(encoding="utf-8")
    assert "Requires-Python" in ci_package and "bash .ci/package" in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def test_the_sdist_manifest_takes_the_changelog_and_the_licence() -> None:
    manifest = (REPO / "MANIFEST.in").read_text(encoding="utf-8").split()
    assert {"CHANGELOG.md", "LICENSE", "README.md"} <= set(manifest)
