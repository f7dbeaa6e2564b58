"""The import graph points one way, ``bench -> curvature -> linsolve -> cext``, without cycles.

Read from the sources with :mod:`ast` (nothing is imported): a package may
import the layers below it only, and the modules' top-level imports form no
cycle (an import inside a function runs late and cannot close one; those
are how a preconditioner's module can name the solver that uses it).
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
LAYERS = ("cext", "linsolve", "curvature", "bench")  # each may import those before it


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    if level == 0:
        return name or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _imports(path: pathlib.Path, *, top_level_only: bool) -> set[str]:
    """The modules ``path`` imports (``from a import b`` counts as ``a`` and ``a.b``)."""
    tree = ast.parse(path.read_text(), str(path))
    module = _module_name(path)
    is_package = path.name == "__init__.py"
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_package, node.level, node.module)
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def _sources(package: str):
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", LAYERS)
def test_a_package_imports_only_the_layers_below_it(package):
    above = set(LAYERS[LAYERS.index(package) + 1:])
    offending = sorted(f"{_module_name(path)} imports {name}"
                       for path in _sources(package)
                       for name in _imports(path, top_level_only=False)
                       if name.split(".")[0] in above)
    assert not offending, offending


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    for root in graph:
        if state.get(root):
            continue
        stack = [(root, iter(sorted(graph[root])))]
        path = [root]
        state[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(child) == 1:
                return path[path.index(child):] + [child]
            elif not state.get(child):
                state[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(graph[child]))))
    return None


def test_module_level_imports_form_no_cycle():
    modules = {_module_name(path): path for package in LAYERS for path in _sources(package)}
    graph = {}
    for name, path in modules.items():
        targets = _imports(path, top_level_only=True)
        # a package's __init__ is run by importing any module below it: not an edge back
        graph[name] = {t for t in targets if t in modules and t != name
                       and not name.startswith(t + ".")}
    assert _cycle(graph) is None, _cycle(graph)


def test_the_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
