"""pipeline/ has no import cycles, and its config (pipeline.settings) loads no heavy framework.

Imports inside functions and under `if TYPE_CHECKING:` count: they hide cycles that bite at run time.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "pipeline"


def module_files() -> dict[str, Path]:
    """{dotted module name: file} of every module under pipeline/ (packages by __init__.py)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every dotted name an import statement anywhere in the tree may bind to (a module, or a
    module's attribute `module.name`); relative imports resolved against `module`."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + is_package]
                base = ".".join([*anchor, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """{module: the pipeline modules it imports}, module-level and function-level imports alike."""
    modules = module_files()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        found = imported_names(tree, name, path.name == "__init__.py")
        graph[name] = {other for other in found if other in modules and other != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None. A package's __init__ importing its own
    submodules (which import each other) is not reported: that is how a package re-exports."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path, on_path = [start], {start}
        stack = [iter(sorted(graph[start]))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                done.add(path[-1])
                on_path.discard(path.pop())
            elif nxt in on_path:
                cycle = path[path.index(nxt) :] + [nxt]
                if not all(m == cycle[0] or m.startswith(cycle[0] + ".") for m in cycle):
                    return cycle
            elif nxt not in done:
                path.append(nxt)
                on_path.add(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_the_graph_sees_function_level_and_relative_imports():
    tree = ast.parse(
        "from pipeline import schema\n"
        "def f():\n    from pipeline.predict import segment\n"
        "from . import storage\nfrom .refine import crf\n"
    )
    names = imported_names(tree, "pipeline.report", is_package=False)
    assert {
        "pipeline.schema",
        "pipeline.predict",
        "pipeline.storage",
        "pipeline.refine.crf",
    } <= names
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert find_cycle({"p": {"p.x"}, "p.x": {"p"}}) is None  # a package and its own submodule


def test_pipeline_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 30 and "pipeline.settings" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def loaded_by(module: str) -> set[str]:
    """Every module a fresh interpreter has loaded after `import module`."""
    code = f"import json, sys\nimport {module}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


@pytest.fixture(scope="module")
def loaded_by_settings() -> set[str]:
    return loaded_by("pipeline.settings")


@pytest.mark.parametrize("heavy", ["torch", "ray", "mlflow"])
def test_importing_settings_loads_no_heavy_framework(loaded_by_settings, heavy):
    loaded = sorted(m for m in loaded_by_settings if m == heavy or m.startswith(heavy + "."))
    assert not loaded, f"import pipeline.settings loaded {heavy}: {loaded[:5]}"


def test_task_stages_import_neither_torch_nor_the_refinement_cores():
    """Each Ray task worker that runs decode or write is a process of its own: torch would be
    most of its memory."""
    loaded = loaded_by("pipeline.cluster.io_stages")
    assert not {"torch", "pydensecrf", "pipeline.cam"} & loaded
