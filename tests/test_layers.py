"""Imports point down only: deploy -> export | serving | client -> ground (tfship/).

Every module under tfship/, export/, serving/, client/ and deploy/ is parsed (not imported), and
every ``import``/``from ... import`` in it is checked, including lazy imports inside functions,
``TYPE_CHECKING`` blocks and ``importlib.import_module("...")`` with a literal name:

* ground (``tfship``, ``tfship.wire``, ``tfship.errors``, ``tfship.manifest``, ...) imports no layer;
* ``tfship.export``, ``tfship.serving`` and ``tfship.client`` import the ground and themselves only
  (never each other: the client stays TensorFlow-free, the server needs no client);
* ``tfship.deploy`` (orchestration a user runs) may import all of those;
* ``tfship.cli`` (and ``python -m tfship``) is the entry layer: the thin click CLI over every
  layer may import everything, and nothing imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: source dir -> the package it installs as (pyproject's package-dir)
SOURCES = {"tfship": "tfship", "export": "tfship.export", "serving": "tfship.serving",
           "client": "tfship.client", "deploy": "tfship.deploy"}
RANK = {"ground": 0, "export": 1, "serving": 1, "client": 1, "deploy": 2, "cli": 3}

#: (importing module, imported module) pairs allowed against the rule, each with its reason.
ALLOWED = {
    # The README promised `from tfship.client.swap import SwapOptions, swap, rollback`; that module
    # is now a deprecated alias of tfship.deploy.swap (DeprecationWarning) kept only for the promise.
    ("tfship.client.swap", "tfship.deploy.swap"),
}


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
    if src == dst or (source, target) in ALLOWED:
        return True
    return RANK[dst] < RANK[src]


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


def test_every_allowed_exception_is_still_used() -> None:
    used = {(source, target) for _, _, source, target in all_imports()}
    assert used >= ALLOWED, f"stale entries in ALLOWED (remove them): {sorted(ALLOWED - used)}"


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
