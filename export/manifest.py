"""Writing the tfship manifest and samples of a version dir (the format is :mod:`tfship.manifest`)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from tfship.manifest import MANIFEST_PATH, SAMPLES_PATH, Manifest

__all__ = ["write_manifest", "save_samples"]


def write_manifest(version_dir: str | os.PathLike[str], manifest: Manifest) -> Path:
    """Write the manifest as indented JSON; return its path."""
    path = Path(version_dir) / MANIFEST_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest.to_json(), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


def _to_storable(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype.kind in "OU":
        flat = [v.encode() if isinstance(v, str) else bytes(v) for v in array.reshape(-1)]
        return np.array(flat, dtype=np.bytes_).reshape(array.shape) if flat else (
            np.zeros(array.shape, np.bytes_))
    return array


def save_samples(
    version_dir: str | os.PathLike[str],
    inputs: Mapping[str, np.ndarray],
    outputs: Mapping[str, np.ndarray],
) -> Path:
    """Write sample inputs and expected outputs to ``assets.extra/tfship_samples.npz``."""
    path = Path(version_dir) / SAMPLES_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"inputs/{k}": _to_storable(v) for k, v in inputs.items()}
    arrays.update({f"outputs/{k}": _to_storable(v) for k, v in outputs.items()})
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]
    return path
