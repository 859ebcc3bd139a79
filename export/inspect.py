"""``inspect_model_dir``: what versions a model dir holds, their signatures, and whether they are intact.

Works on any TF Serving model dir: tfship exports (manifest summary, checksum verification) and
foreign SavedModels such as TF Serving's own test models (signatures read from ``saved_model.pb``,
no manifest, nothing loaded).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from tfship.export.publish import STAGING_PREFIX
from tfship.export.versions import list_versions, parse_version

from tfship.errors import ExportError
from tfship.manifest import (
    MANIFEST_PATH,
    ChecksumReport,
    Manifest,
    Signature,
    read_manifest,
    verify_checksums,
)

__all__ = ["VersionReport", "ModelReport", "inspect_model_dir"]


@dataclass
class VersionReport:
    """One version dir: its signatures, manifest (if tfship made it) and verification status."""

    version: int
    path: Path
    signatures: dict[str, Signature] = field(default_factory=dict)
    manifest: Manifest | None = None
    checksums: ChecksumReport | None = None  # set when verify=True and there is a manifest
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problems found (unreadable SavedModel, bad manifest, tampered or missing files)."""
        return not self.problems


@dataclass
class ModelReport:
    """A model dir: its versions (ascending) and leftovers such as stale staging dirs."""

    path: Path
    name: str
    versions: list[VersionReport]
    staging_dirs: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.versions)


def _inspect_version(version: int, path: Path, verify: bool) -> VersionReport:
    from tfship.export.signature_defs import read_signature_defs

    report = VersionReport(version, path)
    try:
        report.signatures = read_signature_defs(path)
    except ExportError as exc:
        report.problems.append(f"incomplete or not a SavedModel: {exc}")
    if (path / MANIFEST_PATH).exists():
        try:
            report.manifest = read_manifest(path)
        except ExportError as exc:
            report.problems.append(str(exc))
    if report.manifest is not None:
        if report.manifest.version != version:
            report.problems.append(
                f"manifest says version {report.manifest.version} but the dir is version {version}"
            )
        if verify:
            report.checksums = verify_checksums(path, report.manifest)
            if not report.checksums.ok:
                report.problems.append(f"tampered or incomplete: {report.checksums.describe()}")
    return report


def inspect_model_dir(path: str | os.PathLike[str], verify: bool = False) -> ModelReport:
    """Inspect ``BASE/NAME`` (or one version dir ``BASE/NAME/VERSION``).

    ``verify=True`` re-hashes every file of every tfship version against its manifest.

    >>> report = inspect_model_dir("models/mnist", verify=True)   # doctest: +SKIP
    >>> [(v.version, v.ok) for v in report.versions]              # doctest: +SKIP
    [(1, True), (2, False)]
    """
    root = Path(path)
    if not root.exists():
        raise ExportError(f"model dir {str(path)!r} does not exist; pass BASE/NAME, e.g. models/mnist")
    if not root.is_dir():
        raise ExportError(f"{str(path)!r} is not a directory; pass a model dir BASE/NAME")
    own_version = parse_version(root.name)
    if own_version is not None and (root / "saved_model.pb").exists():
        return ModelReport(root.parent, root.parent.name, [_inspect_version(own_version, root, verify)])
    versions = [_inspect_version(v, p, verify) for v, p in list_versions(root).items()]
    staging = sorted(e.name for e in os.scandir(root)
                     if e.name.startswith(STAGING_PREFIX) and not e.name.endswith(".lock"))
    if not versions and (root / "saved_model.pb").exists():
        raise ExportError(
            f"{str(path)!r} is a SavedModel itself, not a model dir: TF Serving needs it inside a "
            f"numeric version dir, e.g. {root.parent / 'NAME' / '1'}"
        )
    return ModelReport(root, root.name, versions, staging)
