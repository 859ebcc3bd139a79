"""Prove an exported SavedModel reproduces the in-memory model before it is published."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from tfship.errors import VerificationError
from tfship.tolerance import OutputDiff, Tolerance, compare_outputs

__all__ = ["run_saved_model", "verify_saved_model"]


def run_saved_model(
    path: str | Path, inputs: Mapping[str, np.ndarray], signature: str = "serving_default"
) -> dict[str, np.ndarray]:
    """Load ``path`` with ``tf.saved_model.load`` (in-process) and run ``signature`` on ``inputs``."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    fn = loaded.signatures[signature]
    kwargs = fn.structured_input_signature[1]
    feed = {k: tf.constant(inputs[k], dtype=spec.dtype) for k, spec in kwargs.items()}
    return {k: np.asarray(v.numpy()) for k, v in fn(**feed).items()}


def verify_saved_model(
    path: str | Path,
    inputs: Mapping[str, np.ndarray],
    expected: Mapping[str, np.ndarray],
    tolerances: Mapping[str, Tolerance],
) -> list[OutputDiff]:
    """Reload the SavedModel at ``path``, run it on ``inputs`` and compare with ``expected``.

    Raises :class:`VerificationError` listing every output's max absolute and relative difference
    when any output is out of tolerance (or missing).
    """
    try:
        actual = run_saved_model(path, inputs)
    except Exception as exc:
        raise VerificationError(
            f"the exported SavedModel could not be reloaded and run on the samples "
            f"({type(exc).__name__}: {exc}); nothing was published"
        ) from exc
    diffs = compare_outputs(expected, actual, tolerances)
    extra = sorted(set(actual) - set(expected))
    if extra or not all(d.ok for d in diffs):
        lines = [d.describe() + ("" if d.ok else "  <-- MISMATCH") for d in diffs]
        if extra:
            lines.append(f"unexpected outputs in the SavedModel: {extra}")
        raise VerificationError(
            "the exported SavedModel does not reproduce the in-memory model on the samples; "
            "nothing was published.\n  " + "\n  ".join(lines) + "\nIf the differences are "
            "expected numerical noise, loosen the tolerance (tolerances={'float32': (atol, rtol)},"
            " CLI --atol/--rtol); otherwise the model is not deterministic at inference "
            "(training-only behaviour, Python-side randomness) and must be fixed."
        )
    return diffs
