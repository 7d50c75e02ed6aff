"""The structure the project promises: data flows one way between modules (no import circle), no
module reads another's log output, no source cites documents that are not in the repository, and
long functions say why they are long."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: source folder -> the package it installs as
PACKAGES = {"mate": "mate", "kernels": "mate.kernels", "segment": "mate.segment"}
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    out = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([package, *parts])] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every project module ``name`` imports, at any depth of its code (lazy imports count)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            if target in MODULES and target != name:
                found.add(target)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_circle_between_modules():
    """A package's __init__ re-exporting its own modules is not a circle; anything else is."""
    graph = {}
    for name, path in MODULES.items():
        deps = _imports(name, path)
        if path.name == "__init__.py":
            deps = {d for d in deps if not d.startswith(name + ".")}
        graph[name] = deps
    assert _cycles(graph) == []


def test_the_cycle_finder_can_fail():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]


@pytest.mark.parametrize("needle", ["train.log", "DESIGN.md", "../shared"])
def test_no_module_reads_logs_or_cites_outside_documents(needle):
    """Only the run-directory layout (mate.rundir) and the log writer (mate.train.logs) may name
    train.log; nothing in the package may point at files a user's clone does not have."""
    allowed = {"train.log": {"mate.rundir", "mate.train.logs"}}.get(needle, set())
    pattern = re.compile(r"(?<![.\w])" + re.escape(needle) + r"(?!\w)")   # not "mate.train.logs"
    offenders = [name for name, path in MODULES.items() if pattern.search(path.read_text()) and name not in allowed]
    assert offenders == []


def test_long_functions_say_why():
    """A function over 80 lines carries a comment starting with "# Long" that says why."""
    offenders = []
    for name, path in MODULES.items():
        source = path.read_text()
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                body = lines[node.lineno - 1:node.end_lineno]
                if length > MAX_FUNCTION_LINES and not any(line.strip().startswith("# Long") for line in body):
                    offenders.append(f"{name}.{node.name} ({length} lines)")
    assert offenders == []
