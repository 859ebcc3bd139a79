"""Imports point down only: cli -> deploy -> export | serving | client -> ground (tfship/), with no circles.

Every module under tfship/, export/, serving/, client/, deploy/ and cli/ is parsed (not imported), and
every ``import``/``from ... import`` in it is checked, including lazy imports inside functions,
``TYPE_CHECKING`` blocks and ``importlib.import_module("...")`` with a literal name:

* ground (``tfship``, ``tfship.wire``, ``tfship.errors``, ``tfship.manifest``, ...) imports no layer;
* ``tfship.export``, ``tfship.serving`` and ``tfship.client`` import the ground and themselves only
  (never each other: the client stays TensorFlow-free, the server needs no client);
* ``tfship.deploy`` (orchestration a user runs) may import all of those;
* ``tfship.cli`` (and ``python -m tfship``) is the entry layer: the thin click CLI over every
  layer may import everything, and nothing imports it.

There are no exceptions to the direction rule.

Inside ``tfship.serving`` the front ends (gRPC, TF Serving REST, V2) are adapters over the one data
plane: no front end imports another, and the data plane imports none of them. Across the whole
project no modules import each other in a circle, lazy imports included: a lazy import that closes a
circle hides a shared piece that wants a module of its own (``TYPE_CHECKING`` imports never run and do
not count). There are no exceptions; the one circle left (deploy: swap <-> fleet) is a strict xfail
until issue 23's second delivery gives the swap plan its own module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: source dir -> the package it installs as (pyproject's package-dir)
SOURCES = {"tfship": "tfship", "export": "tfship.export", "serving": "tfship.serving",
           "client": "tfship.client", "deploy": "tfship.deploy", "cli": "tfship.cli"}
RANK = {"ground": 0, "export": 1, "serving": 1, "client": 1, "deploy": 2, "cli": 3}


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in ("export", "serving", "client", "deploy", "cli"):
        return parts[1]
    if parts[:2] == ["tfship", "__main__"]:
        return "cli"
    return "ground"


def module_name(path: Path) -> tuple[str, bool]:
    """``(dotted name, is_package)`` of a source file."""
    rel = path.relative_to(ROOT)
    parts = [SOURCES[rel.parts[0]], *rel.parts[1:-1]]
    if path.name != "__init__.py":
        parts.append(path.stem)
    return ".".join(parts), path.name == "__init__.py"


def imports(source: str, name: str, is_package: bool = False) -> list[tuple[int, str]]:
    """``(line, absolute module)`` of every tfship import in module ``name``, wherever it sits."""
    package = name if is_package else name.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from tfship import errors` imports tfship.errors; `from x import name` imports x
            found += [(node.lineno, f"{base}.{alias.name}" if base == "tfship" else base)
                      for alias in node.names]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value))
    return sorted({(line, mod) for line, mod in found if mod == "tfship" or mod.startswith("tfship.")})


def arrow_is_allowed(source: str, target: str) -> bool:
    src, dst = layer(source), layer(target)
    return src == dst or RANK[dst] < RANK[src]


def all_imports() -> list[tuple[Path, int, str, str]]:
    """``(file, line, importing module, imported module)`` for every module of every layer."""
    found = []
    for top in SOURCES:
        for path in sorted((ROOT / top).rglob("*.py")):
            if "protos" in path.parts:  # generated gencode (imports only google.protobuf / itself)
                continue
            source, is_package = module_name(path)
            found += [(path, line, source, target) for line, target in imports(path.read_text(), source, is_package)]
    return found


def test_imports_point_down_only() -> None:
    bad = [f"{path.relative_to(ROOT)}:{line}: {source} ({layer(source)}) imports {target} ({layer(target)})"
           for path, line, source, target in all_imports() if not arrow_is_allowed(source, target)]
    assert not bad, "upward or sideways imports (see tests/test_layers.py for the rule):\n" + "\n".join(bad)


def test_the_walk_sees_lazy_relative_and_literal_imports() -> None:
    # The checker itself must catch the forms it claims to: a lazy import inside a function,
    # a relative import and importlib.import_module with a literal.
    probe = ("def f():\n    from tfship.deploy import swap\n    from ..serving import main\n"
             "    import importlib\n    importlib.import_module('tfship.export.api')\n")
    found = imports(probe, "tfship.client._layers_probe")
    assert found == [(2, "tfship.deploy"), (3, "tfship.serving"), (5, "tfship.export.api")]
    assert not any(arrow_is_allowed("tfship.client._layers_probe", m) for _, m in found)
    assert arrow_is_allowed("tfship.deploy.swap", "tfship.export.api")
    assert arrow_is_allowed("tfship.cli.serve", "tfship.deploy.launch")
    assert not arrow_is_allowed("tfship.manifest", "tfship.export.api")



# --------------------------------------------------------------------------- inside serving/

#: the model server's front ends: adapters over tfship.serving.data_plane, never over each other
FRONT_ENDS = ("tfship.serving.grpc", "tfship.serving.rest", "tfship.serving.v2")
DATA_PLANE = "tfship.serving.data_plane"


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def front_end_of(module: str) -> str | None:
    return next((f for f in FRONT_ENDS if _within(module, f)), None)


def serving_arrow_is_allowed(source: str, target: str) -> bool:
    """No front end imports another; the data plane imports no front end."""
    src, dst = front_end_of(source), front_end_of(target)
    if dst is None:
        return True
    if _within(source, DATA_PLANE):
        return False
    return src is None or src == dst


def test_front_ends_never_import_each_other_nor_sit_under_the_data_plane() -> None:
    bad = [f"{path.relative_to(ROOT)}:{line}: {source} imports {target}"
           for path, line, source, target in all_imports() if not serving_arrow_is_allowed(source, target)]
    assert not bad, ("a front end reaches into another (move the shared piece into serving/data_plane "
                     "or tfship/wire):\n" + "\n".join(bad))


def test_the_serving_rule_catches_sideways_and_upward_imports() -> None:
    assert not serving_arrow_is_allowed("tfship.serving.rest.protocol", "tfship.serving.grpc.service")
    assert not serving_arrow_is_allowed("tfship.serving.v2.rest", "tfship.serving.rest.protocol")
    assert not serving_arrow_is_allowed("tfship.serving.data_plane.plane", "tfship.serving.grpc.status")
    assert serving_arrow_is_allowed("tfship.serving.rest.protocol", "tfship.serving.data_plane")
    assert serving_arrow_is_allowed("tfship.serving.grpc.server", "tfship.serving.grpc.service")
    assert serving_arrow_is_allowed("tfship.serving.main", "tfship.serving.rest.server")


# --------------------------------------------------------------------------- circles

def _modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for top in SOURCES:
        for path in sorted((ROOT / top).rglob("*.py")):
            if "protos" not in path.parts:
                name, is_package = module_name(path)
                found[name] = (path, is_package)
    return found


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:`` (they never run)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def import_graph(modules: dict[str, tuple[Path, bool]]) -> dict[str, set[str]]:
    """module -> the project modules it imports (``from pkg import sub`` counts as ``pkg.sub``)."""
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in _runtime_nodes(ast.parse(path.read_text(), name)):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.add(sub if sub in modules else base)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


# Arrows between layers only point down, so a circle never leaves its layer: one case per layer.
@pytest.mark.parametrize("checked", ["ground", "export", "serving", "client", "deploy", "cli"])
def test_no_import_circles(checked: str) -> None:
    found = [sorted(c) for c in cycles(import_graph(_modules())) if layer(min(c)) == checked]
    assert not found, ("modules importing each other in a circle (lazy imports count; give what they share "
                       "a module of its own):\n" + "\n".join(map(str, found)))


def test_the_circle_check_finds_circles_and_ignores_type_checking() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset({"a", "b", "c"})]
    assert cycles({"a": {"b"}, "b": set()}) == []
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import x\nelse:\n    import y\n"
                     "def f():\n    import z\n")
    names = {a.name for n in _runtime_nodes(tree) if isinstance(n, ast.Import) for a in n.names}
    assert names == {"y", "z"}
