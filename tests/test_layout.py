"""The house rules of the layout (DESIGN.md, "Layers") that import-linter cannot check: module size, and that only
``backends/`` knows which backends exist (everything else asks the backend what it declares)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pytest_aienergyscore"
MAX_LINES = 500
OUR_BACKENDS = {"optimum", "pytorch", "vllm"}

# The only places outside backends/ where one of our backends' names may stand, and why.
ALLOWED_BACKEND_NAMES = {
    # --backend's default, as in AI Energy Score (the option table must be able to say it without importing backends)
    ("config/options.py", "DEFAULT_BACKEND"),
    # versions of the libraries a run used, reported beside the result (a library's name, not a backend's)
    ("report/environment.py", "LIBRARIES"),
}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _docstrings(tree: ast.Module) -> set[int]:
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, kinds)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }


def _assigned_name(tree: ast.Module, constant: ast.Constant) -> str | None:
    """The module-level name whose value holds ``constant`` (``X = "..."`` or ``X = (..., "...", ...)``)."""
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and value is not None and any(n is constant for n in ast.walk(value)):
            return target.id
    return None


def backend_names_outside_backends() -> list[str]:
    """Every place outside backends/ that spells one of our backends' names in code (docstrings and comments aside)."""
    found = []
    for path in _modules():
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("backends/"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            spelled = None
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                spelled = node.value
            elif isinstance(node, ast.Attribute):
                spelled = node.attr
            elif isinstance(node, ast.Name):
                spelled = node.id
            if spelled is None or spelled.lower() not in OUR_BACKENDS:
                continue
            holder = _assigned_name(tree, node) if isinstance(node, ast.Constant) else None
            if (relative, holder) not in ALLOWED_BACKEND_NAMES:
                found.append(f"{relative}:{node.lineno} {spelled!r}")
    return found


def test_no_module_of_the_package_is_longer_than_500_lines() -> None:
    long = {
        path.relative_to(PACKAGE).as_posix(): n
        for path in _modules()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def test_no_module_outside_backends_names_a_backend() -> None:
    assert backend_names_outside_backends() == []


def test_the_backend_name_check_finds_a_comparison_with_a_backend_name(tmp_path, monkeypatch) -> None:
    """The check above cannot pass by finding nothing: a module comparing with "vllm" is caught, a docstring is not."""
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "x.py").write_text('"""Talks about vllm in prose."""\nREMOTE = backend == "vllm"\n')
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path)
    assert backend_names_outside_backends() == ["report/x.py:2 'vllm'"]
