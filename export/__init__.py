"""Export: a trained Keras model -> ``BASE/NAME/VERSION/`` SavedModel with manifest and warmup.

Importing this package does not import TensorFlow; the names below load on first use::

    from tfship.export import export_model, inspect_model_dir, read_manifest, load_samples

``tfship.manifest`` and ``tfship.tolerance`` never need TensorFlow (the client uses
them for parity checks).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "export_model",
    "ExportResult",
    "inspect_model_dir",
    "ModelReport",
    "VersionReport",
    "read_manifest",
    "load_samples",
    "verify_checksums",
    "Manifest",
    "Signature",
    "TensorSpec",
    "Tolerance",
    "compare_outputs",
]

_LAZY = {
    "export_model": "api",
    "ExportResult": "api",
    "inspect_model_dir": "inspect",
    "ModelReport": "inspect",
    "VersionReport": "inspect",
    "read_manifest": "tfship.manifest",
    "load_samples": "tfship.manifest",
    "verify_checksums": "tfship.manifest",
    "Manifest": "tfship.manifest",
    "Signature": "tfship.manifest",
    "TensorSpec": "tfship.manifest",
    "Tolerance": "tfship.tolerance",
    "compare_outputs": "tfship.tolerance",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        target = _LAZY[name]
        module = importlib.import_module(target if "." in target else f"tfship.export.{target}")
        return getattr(module, name)
    raise AttributeError(f"module 'tfship.export' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
