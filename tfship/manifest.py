"""The tfship manifest and sample files of a version dir: format, reading, checksums.

Ground layer, TF-FREE (json + numpy only): the client reads manifests and samples for parity checks
against a server, without the original model and without TensorFlow; ``tfship.export.manifest``
writes them.

Files, all in ``VERSION/assets.extra/`` (TF Serving copies nothing from there; it only reads
``tf_serving_warmup_requests``)::

    tfship_manifest.json   this module's Manifest, JSON, schema "tfship.manifest" version 1
    tfship_samples.npz     sample inputs and the in-memory model's outputs for them:
                           keys "inputs/<input name>" and "outputs/<output name>", each a batch
                           (first axis = sample); strings are stored as numpy bytes ("S") and
                           loaded back as object arrays of ``bytes`` (no pickle anywhere)

Example::

    from tfship.manifest import read_manifest, load_samples
    m = read_manifest("models/mnist/3")
    inputs, expected = load_samples("models/mnist/3")
    m.signature.inputs[0].name, m.signature.inputs[0].dtype, m.signature.inputs[0].shape
    # ('image', 'DT_FLOAT', [-1, 28, 28])
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tfship.errors import ExportError
from tfship.tolerance import Tolerance, resolve_tolerances
from tfship.wire import dtypes

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "MANIFEST_PATH",
    "SAMPLES_PATH",
    "WARMUP_PATH",
    "TensorSpec",
    "Signature",
    "Manifest",
    "ChecksumReport",
    "read_manifest",
    "load_samples",
    "file_checksums",
    "verify_checksums",
]

SCHEMA = "tfship.manifest"
SCHEMA_VERSION = 1
MANIFEST_PATH = "assets.extra/tfship_manifest.json"
SAMPLES_PATH = "assets.extra/tfship_samples.npz"
WARMUP_PATH = "assets.extra/tf_serving_warmup_requests"


@dataclass(frozen=True)
class TensorSpec:
    """One signature input or output: ``dtype`` is TF's name (``DT_FLOAT``), ``shape`` uses -1
    for an unknown dimension and is ``None`` for unknown rank."""

    name: str
    dtype: str
    shape: list[int] | None

    @property
    def numpy_dtype(self) -> np.dtype:
        """The numpy dtype to build inputs with (``object`` for strings)."""
        found = dtypes.by_name(self.dtype).numpy
        return np.dtype(object) if found is None else found

    def to_json(self) -> dict[str, Any]:
        try:
            numpy_name: str | None = self.numpy_dtype.name
        except Exception:  # DT_INVALID (init-op outputs), DT_RESOURCE ...: no numpy equivalent
            numpy_name = None
        return {"name": self.name, "dtype": self.dtype, "numpy_dtype": numpy_name,
                "shape": self.shape}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TensorSpec:
        shape = data.get("shape")
        return cls(str(data["name"]), str(data["dtype"]), None if shape is None else list(shape))


@dataclass(frozen=True)
class Signature:
    """The exported serving signature (``serving_default``, method ``tensorflow/serving/predict``)."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    name: str = "serving_default"
    method: str = "tensorflow/serving/predict"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "method": self.method,
                "inputs": [t.to_json() for t in self.inputs],
                "outputs": [t.to_json() for t in self.outputs]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Signature:
        return cls(
            inputs=[TensorSpec.from_json(t) for t in data["inputs"]],
            outputs=[TensorSpec.from_json(t) for t in data["outputs"]],
            name=str(data.get("name", "serving_default")),
            method=str(data.get("method", "tensorflow/serving/predict")),
        )

    def summary(self) -> str:
        """``image:DT_FLOAT[-1,28,28] -> probs:DT_FLOAT[-1,10]``"""

        def one(t: TensorSpec) -> str:
            shape = "?" if t.shape is None else "[" + ",".join(map(str, t.shape)) + "]"
            return f"{t.name}:{t.dtype}{shape}"

        return ", ".join(map(one, self.inputs)) + " -> " + ", ".join(map(one, self.outputs))


@dataclass
class Manifest:
    """``tfship_manifest.json``. ``files`` maps every file of the version dir except the manifest
    itself (POSIX relative path) to its sha256 hex digest."""

    model_name: str
    version: int
    created: str  # ISO 8601 UTC, e.g. 2026-11-21T01:23:45Z
    signature: Signature
    files: dict[str, str]
    tolerances: dict[str, Tolerance] = field(default_factory=lambda: resolve_tolerances(None))
    sample_count: int = 0
    tfship_version: str = ""
    tensorflow_version: str = ""
    keras_version: str = ""
    source: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "schema_version": self.schema_version,
            "model_name": self.model_name,
            "version": self.version,
            "created": self.created,
            "tfship_version": self.tfship_version,
            "tensorflow_version": self.tensorflow_version,
            "keras_version": self.keras_version,
            "source": self.source,
            "signature": self.signature.to_json(),
            "samples": {"path": SAMPLES_PATH, "count": self.sample_count},
            "tolerances": {k: asdict(v) for k, v in sorted(self.tolerances.items())},
            "files": dict(sorted(self.files.items())),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Manifest:
        if data.get("schema") != SCHEMA:
            raise ExportError(f"not a tfship manifest (schema {data.get('schema')!r})")
        if int(data.get("schema_version", 0)) > SCHEMA_VERSION:
            raise ExportError(
                f"manifest schema version {data['schema_version']} is newer than this tfship "
                f"understands ({SCHEMA_VERSION}); upgrade tfship"
            )
        return cls(
            model_name=str(data["model_name"]),
            version=int(data["version"]),
            created=str(data["created"]),
            signature=Signature.from_json(data["signature"]),
            files={str(k): str(v) for k, v in data["files"].items()},
            tolerances=resolve_tolerances(data.get("tolerances")),
            sample_count=int(data.get("samples", {}).get("count", 0)),
            tfship_version=str(data.get("tfship_version", "")),
            tensorflow_version=str(data.get("tensorflow_version", "")),
            keras_version=str(data.get("keras_version", "")),
            source=dict(data.get("source", {})),
            schema_version=int(data["schema_version"]),
        )


def read_manifest(version_dir: str | os.PathLike[str]) -> Manifest:
    """Read ``VERSION/assets.extra/tfship_manifest.json``.

    Raises :class:`ExportError` when it is missing or malformed.
    """
    path = Path(version_dir) / MANIFEST_PATH
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(
            f"no tfship manifest at {path}: the version was not exported by tfship "
            "(export it with `tfship export` to get a manifest and samples)"
        ) from None
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot read tfship manifest {path}: {exc}") from exc
    try:
        return Manifest.from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportError(f"malformed tfship manifest {path}: {exc!r}") from exc


def _from_storable(array: np.ndarray) -> np.ndarray:
    if array.dtype.kind == "S":
        out = np.empty(array.shape, dtype=object)
        out.reshape(-1)[:] = [bytes(v) for v in array.reshape(-1)]
        return out
    return array


# np.load reads each .npy header with ast.literal_eval, whose AST state (a recursion counter) is
# shared by the interpreter's threads in CPython 3.11: two at once can fail with "SystemError: AST
# constructor recursion depth mismatch" (cf. gh-106905), seen when a fleet checked parity on its
# replicas in parallel on 3.11.7.
_NPY_HEADER_LOCK = threading.Lock()


def load_samples(
    version_dir: str | os.PathLike[str],
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Read ``(inputs, outputs)`` from the samples file; string tensors come back as object
    arrays of ``bytes``."""
    path = Path(version_dir) / SAMPLES_PATH
    try:
        with _NPY_HEADER_LOCK, np.load(path, allow_pickle=False) as data:
            inputs: dict[str, np.ndarray] = {}
            outputs: dict[str, np.ndarray] = {}
            for key in data.files:
                kind, _, name = key.partition("/")
                (inputs if kind == "inputs" else outputs)[name] = _from_storable(data[key])
    except FileNotFoundError:
        raise ExportError(f"no tfship samples at {path}: export the model with tfship") from None
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot read tfship samples {path}: {exc}") from exc
    return inputs, outputs


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_checksums(version_dir: str | os.PathLike[str]) -> dict[str, str]:
    """sha256 of every file under ``version_dir`` except the manifest, by POSIX relative path."""
    root = Path(version_dir)
    sums: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for filename in sorted(filenames):
            full = Path(dirpath) / filename
            rel = full.relative_to(root).as_posix()
            if rel != MANIFEST_PATH:
                sums[rel] = _sha256(full)
    return sums


@dataclass(frozen=True)
class ChecksumReport:
    """Result of :func:`verify_checksums`: ``ok`` when nothing is missing, modified or extra."""

    missing: list[str]
    modified: list[str]
    unexpected: list[str]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.modified or self.unexpected)

    def describe(self) -> str:
        if self.ok:
            return "all files match the manifest"
        parts = []
        for label, names in (("missing", self.missing), ("modified", self.modified),
                             ("unexpected", self.unexpected)):
            if names:
                parts.append(f"{label}: {', '.join(names)}")
        return "; ".join(parts)


def verify_checksums(
    version_dir: str | os.PathLike[str], manifest: Manifest | None = None
) -> ChecksumReport:
    """Re-hash every file of a version and compare with its manifest."""
    manifest = manifest if manifest is not None else read_manifest(version_dir)
    actual = file_checksums(version_dir)
    expected = manifest.files
    return ChecksumReport(
        missing=sorted(set(expected) - set(actual)),
        modified=sorted(k for k in expected if k in actual and actual[k] != expected[k]),
        unexpected=sorted(set(actual) - set(expected)),
    )
