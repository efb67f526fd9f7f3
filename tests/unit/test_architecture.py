"""The shape rules of ``operator/mlkube``, checked on every run so they cannot decay.

Short modules and functions are what keep a reconcile readable; the phase and decision
words live once in ``mlkube.api.status`` so that a newcomer who renames one finds every
user through mypy rather than by grep.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "mlkube"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# Flat manifest literals: long, but one expression each.
FUNCTION_LENGTH_EXEMPT = ("controller/builders/",)
# The words of the contracts; a literal of one of them outside the api layer is a copy.
CONTRACT_WORDS = frozenset({"Succeeded", "Rejected", "Promoted", "Running"})


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _relative(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


@pytest.mark.parametrize("path", _modules(), ids=_relative)
def test_no_module_is_over_400_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{_relative(path)} has {lines} lines"


def _long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found.append(f"{node.name} ({length} lines)")
    return found


@pytest.mark.parametrize(
    "path",
    [
        p
        for p in _modules()
        if _relative(p).startswith(("controller/", "runtime/"))
        and not _relative(p).startswith(FUNCTION_LENGTH_EXEMPT)
    ],
    ids=_relative,
)
def test_no_function_in_the_controller_or_runtime_is_over_60_lines(path: Path) -> None:
    assert _long_functions(path) == []


def test_phase_and_decision_words_are_defined_only_in_the_api() -> None:
    copies = []
    for path in _modules():
        if _relative(path).startswith("api/"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in CONTRACT_WORDS:
                copies.append(f"{_relative(path)}:{node.lineno} {node.value!r}")
    assert copies == []


def test_the_rules_see_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    sample = tmp_path / "sample.py"
    sample.write_text(f"def long():\n{body}\n", encoding="utf-8")
    assert _long_functions(sample) == [f"long ({MAX_FUNCTION_LINES + 1} lines)"]
