"""``export_model``: a Keras model -> a verified, versioned SavedModel that TF Serving can serve.

>>> result = export_model(model, "models", "mnist")        # doctest: +SKIP
>>> result.version, result.path                              # doctest: +SKIP
(1, PosixPath('/abs/models/mnist/1'))
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tfship.export import publish as _publish
from tfship.export.manifest import save_samples, write_manifest
from tfship.export.versions import validate_model_name, validate_version

from tfship.manifest import WARMUP_PATH, Manifest, Signature, file_checksums
from tfship.tolerance import OutputDiff, Tolerance, resolve_tolerances

__all__ = ["ExportResult", "export_model"]


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_model` published."""

    path: Path  # BASE/NAME/VERSION, absolute
    version: int
    model_name: str
    signature: Signature
    manifest: Manifest
    diffs: list[OutputDiff]  # verification result per output

    @property
    def signature_summary(self) -> str:
        """``x:DT_FLOAT[-1,1] -> dense:DT_FLOAT[-1,1]``"""
        return self.signature.summary()


def _versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    from tfship import __version__

    return {"tfship_version": __version__, "tensorflow_version": tf.__version__,
            "keras_version": keras.__version__}


def export_model(
    model_or_path: Any,
    base_dir: str | os.PathLike[str],
    name: str,
    version: int | None = None,
    *,
    samples: Any = None,
    input_signature: Any = None,
    custom_objects: Mapping[str, Any] | None = None,
    safe_mode: bool = True,
    architecture: str | Callable[[], Any] | None = None,
    tolerances: Mapping[str, Tolerance | tuple[float, float]] | None = None,
    warmup: bool = True,
    sample_count: int = 4,
    warmup_from: Sequence[str | os.PathLike[str]] | None = None,
    warmup_records: int = 100,
) -> ExportResult:
    """Export a Keras model to ``base_dir/name/<version>/`` and verify it before publishing.

    ``model_or_path``: a ``keras.Model``, a ``.keras``/``.h5`` file, a SavedModel dir, or a
    weights file together with ``architecture="module:callable"`` (a callable building the model).
    ``version=None`` publishes highest existing + 1. ``samples`` (dict by input name, list, or
    one array; first axis = batch) are used for verification, warmup and stored for parity checks;
    without them ``sample_count`` deterministic samples are generated. ``input_signature``
    (``tf.TensorSpec``s) or ``samples`` are needed for a subclassed model that was never built.
    ``tolerances`` overrides the per-dtype verification tolerances, e.g. ``{"float32": (1e-4, 1e-3)}``.
    ``warmup_from`` (capture files or directories, see :mod:`tfship.capture`) builds the warmup
    file from real captured requests of model ``name`` instead of the samples: at most
    ``warmup_records``, one per distinct input shape first.

    Raises :class:`~tfship.errors.ExportError` subclasses; on any error nothing is published and
    directories this call created are removed again.
    """
    from tfship.export.samples import generate_samples, normalize_samples
    from tfship.export.signature import manifest_signature, prepare_serving_model, write_saved_model
    from tfship.export.signature_defs import read_signature_defs
    from tfship.export.sources import load_source
    from tfship.export.verify import verify_saved_model
    from tfship.export.warmup import write_warmup_from_capture, write_warmup_requests

    validate_model_name(name)
    if version is not None:
        validate_version(version)
    tols = resolve_tolerances(tolerances)
    # Fail fast before any work on an explicit version that exists (checked again under the lock).
    early_dir = Path(base_dir).absolute() / name
    if version is not None and early_dir.is_dir():
        _publish.check_version_free(early_dir, version)

    source = load_source(model_or_path, custom_objects=custom_objects, safe_mode=safe_mode,
                         architecture=architecture)
    serving = prepare_serving_model(source, samples, input_signature)
    if samples is not None:
        inputs = normalize_samples(samples, serving.input_specs)
    else:
        inputs = generate_samples(serving.input_specs, serving.vocabulary, sample_count,
                                  phrases=serving.phrases)
    if source.needs_build:
        serving.reference_outputs(inputs)  # builds the architecture's variables
        source.load_weights()
    expected = serving.reference_outputs(inputs)

    model_dir, created = _publish.prepare_model_dir(base_dir, name)
    try:
        _publish.clean_stale_staging(model_dir)
        with _publish.staging_dir(model_dir) as staging:
            write_saved_model(serving, staging)
            _publish.pause_point("saved_model_written")
            diffs = verify_saved_model(staging, inputs, expected, tols)
            signature = manifest_signature(serving, read_signature_defs(staging)["serving_default"])
            save_samples(staging, inputs, expected)
            if warmup and warmup_from:
                write_warmup_from_capture(staging / WARMUP_PATH, name, [os.fspath(p) for p in warmup_from],
                                          max_records=warmup_records, signature=signature)
            elif warmup:
                write_warmup_requests(staging / WARMUP_PATH, name, inputs)
            _publish.fsync_tree(staging)
            base_manifest = {
                "model_name": name, "signature": signature, "files": file_checksums(staging),
                "tolerances": tols, "sample_count": _batch_size(inputs),
                "source": source.describe(), **_versions(),
            }
            manifests: list[Manifest] = []

            def finalize(staged: Path, chosen: int) -> None:
                created_at = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                manifest = Manifest(version=chosen, created=created_at, **base_manifest)
                write_manifest(staged, manifest)
                manifests.append(manifest)

            chosen, path = _publish.publish(staging, model_dir, version, finalize)
    except BaseException:
        _publish.remove_created_dirs(created)
        raise
    return ExportResult(path, chosen, name, signature, manifests[-1], diffs)


def _batch_size(inputs: Mapping[str, np.ndarray]) -> int:
    for value in inputs.values():
        if np.ndim(value):
            return int(np.shape(value)[0])
    return 1

