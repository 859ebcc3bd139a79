"""Skips that CI turns into failures: a test whose tool or limit is missing skips on a laptop, but
with ``TFSHIP_REQUIRE_TOOLS=1`` (set by .ci/run, which installs and raises everything) it fails, so
CI never reports green over a test that silently did not run."""

from __future__ import annotations

import os
import shutil

import pytest

__all__ = ["skip_or_fail", "need_command", "need_module"]


def skip_or_fail(reason: str) -> None:
    """Skip with ``reason``, or fail when ``TFSHIP_REQUIRE_TOOLS=1``."""
    if os.environ.get("TFSHIP_REQUIRE_TOOLS") == "1":
        pytest.fail(f"TFSHIP_REQUIRE_TOOLS=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def need_command(name: str, package: str) -> str:
    """The path of the ``name`` command, or skip/fail naming the Debian ``package`` to install."""
    path = shutil.which(name)
    if path is None:
        skip_or_fail(f"the {name} command is missing (apt-get install {package})")
    return path  # type: ignore[return-value]


def need_module(name: str, install: str) -> None:
    """Import ``name`` or skip/fail naming what to ``install``."""
    try:
        __import__(name)
    except ImportError as exc:
        skip_or_fail(f"{name} does not import ({exc}): pip install {install}")
