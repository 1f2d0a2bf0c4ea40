"""The package stays readable as it grows (issue 17): no module over 600 lines, no function over
80, and no import of the package's own modules inside a function body (such an import only hides
a cycle), except in ``study.cli``, where commands import their layer on demand so that
``study --help`` starts without torch. The import direction itself is checked by ``lint-imports``
(contracts in pyproject.toml), which ``scripts/test.sh`` runs before pytest."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted([*ROOT.glob("study/**/*.py"), *ROOT.glob("analysis/**/*.py")])
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
LAZY_IMPORTS_ALLOWED = ("study/cli/",)  # start-up laziness of the command line


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _functions(tree: ast.AST):
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _own_module(node: ast.AST) -> str | None:
    if isinstance(node, ast.ImportFrom):
        name = node.module or ""
        return name if node.level or name.split(".")[0] in ("study", "analysis") else None
    if isinstance(node, ast.Import):
        own = [a.name for a in node.names if a.name.split(".")[0] in ("study", "analysis")]
        return own[0] if own else None
    return None


def test_sources_were_found():
    assert any(_rel(p) == "study/core/registry.py" for p in SOURCES)


@pytest.mark.parametrize("path", SOURCES, ids=_rel)
def test_module_and_function_sizes(path):
    source = path.read_text()
    assert len(source.splitlines()) <= MAX_MODULE_LINES, f"{_rel(path)} is over {MAX_MODULE_LINES} lines"
    long = [f"{f.name} ({f.end_lineno - f.lineno + 1} lines)" for f in _functions(ast.parse(source))
            if f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{_rel(path)}: functions over {MAX_FUNCTION_LINES} lines: {', '.join(long)}"


@pytest.mark.parametrize("path", [p for p in SOURCES if not _rel(p).startswith(LAZY_IMPORTS_ALLOWED)], ids=_rel)
def test_no_import_of_the_package_inside_a_function(path):
    inner = sorted({f"{_own_module(n)} (line {n.lineno})" for f in _functions(ast.parse(path.read_text()))
                    for n in ast.walk(f) if _own_module(n)})
    assert not inner, f"{_rel(path)} imports inside a function: {', '.join(inner)}"
