"""Version discovery on disk and version policies (TF Serving compat spec §3.1).

Children of a model's base path whose names parse as a base-10 int64 are versions (leading zeros
allowed). Everything else is ignored, so temp dirs such as ``.tfship-tmp-...`` never load.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..config.model_config import AllVersions, Latest, Specific, VersionPolicy

__all__ = ["VersionPolicy", "Latest", "AllVersions", "Specific", "discover_versions", "select"]

log = logging.getLogger("tfship.serving")

_INT64_MAX = 2**63 - 1


def parse_version(name: str) -> int | None:
    """``"00000123"`` -> 123; non-numeric or out-of-int64 names -> ``None``."""
    if not name or not name.isascii() or not name.isdigit():
        return None
    value = int(name)
    return value if value <= _INT64_MAX else None


def discover_versions(base_path: str | os.PathLike[str]) -> dict[int, Path]:
    """Map version number -> version dir for every numeric child dir of ``base_path``.

    Raises ``FileNotFoundError`` when the base path does not exist (the poll then changes nothing).
    Duplicate parses (``001``, ``0001``) collapse into one version; the lexicographically first
    dir wins, which keeps the choice stable between polls.
    """
    found: dict[int, Path] = {}
    with os.scandir(base_path) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        version = parse_version(entry.name)
        if version is None or version in found:
            continue
        try:
            if not entry.is_dir():
                continue
        except OSError:
            continue
        found[version] = Path(entry.path)
    return found


def select(policy: VersionPolicy | None, available: dict[int, Path], model: str = "") -> dict[int, Path]:
    """The versions the policy aspires, out of those found on disk."""
    if policy is None:
        policy = Latest(1)
    if isinstance(policy, AllVersions):
        return dict(available)
    if isinstance(policy, Specific):
        chosen = {}
        for v in policy.versions:
            if v in available:
                chosen[v] = available[v]
            else:
                log.warning("Version %d of servable %s not found in base path", v, model)
        return chosen
    n = max(1, policy.num_versions)
    return {v: available[v] for v in sorted(available, reverse=True)[:n]}
