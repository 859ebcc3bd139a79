"""The repo layout maps export/, serving/, client/, deploy/ and cli/ onto tfship.*; every package must be listed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_directory_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapping = {v: k for k, v in config["package-dir"].items()} | {"tfship": "tfship"}
    found = set()
    for top, package in mapping.items():
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((package, *rel)))
    assert found == listed


def test_no_top_level_export_client_serving_packages_are_installed() -> None:
    import tfship.cli
    import tfship.client
    import tfship.export
    import tfship.serving

    assert not {"export", "client", "serving", "deploy", "cli"} & set(sys.modules)
    assert tfship.export.__name__ == "tfship.export"
    assert Path(tfship.cli.__file__).parent.name == "cli" and tfship.cli.__name__ == "tfship.cli"


def test_the_tfship_command_and_python_m_tfship_reach_the_cli() -> None:
    # The console script is tfship.cli:main (cli/ installed as tfship.cli); `python -m tfship`
    # and `python -m tfship.cli` must run the same group.
    import importlib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, attr = scripts["tfship"].partition(":")
    from tfship.cli import main

    assert getattr(importlib.import_module(module), attr) is main
    for entry in ("tfship", "tfship.cli"):
        shown = subprocess.run([sys.executable, "-m", entry, "--version"], capture_output=True, text=True,
                               timeout=120, check=True)
        assert shown.stdout.startswith("tfship, version "), shown


def test_test_file_basenames_are_unique() -> None:
    # pytest's default (prepend) import mode imports test files by basename: two test_x.py in
    # different folders make collection fail with "import file mismatch".
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
