"""Prove the served model is the trained model: send sample inputs, compare outputs per dtype.

The reference is an export's version dir (its ``tfship_samples.npz`` holds sample inputs and the
in-memory model's outputs), an ``(inputs, outputs)`` pair, or a Keras model plus ``inputs=``.

>>> report = check_parity(client, "digits", "models/digits/1")  # doctest: +SKIP
>>> print(report.text())                                        # doctest: +SKIP
PASS digits v1 via grpc://127.0.0.1:8500: 64 rows, 1 output(s)
  dense_1  float32  max abs 1.19e-07  max rel 3.6e-07  worst row 17  (atol 1e-05, rtol 0.0001)  ok
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tfship.client.batching import predict_batches

from tfship.errors import ConfigError, ParityError, ServingError

__all__ = ["check_parity", "ParityReport", "OutputParity", "reference_outputs"]


@dataclass(frozen=True)
class OutputParity:
    """One output: worst differences, the row where they occur, and the tolerance applied."""

    name: str
    dtype: str
    ok: bool
    max_abs: float
    max_rel: float
    worst_row: int | None
    atol: float
    rtol: float
    reason: str = ""

    def line(self) -> str:
        verdict = "ok" if self.ok else "MISMATCH"
        if self.reason:
            return f"  {self.name}  {self.dtype}  {self.reason}  {verdict}"
        worst = f"worst row {self.worst_row}" if self.worst_row is not None else "worst row -"
        return (f"  {self.name}  {self.dtype}  max abs {self.max_abs:.3g}  max rel {self.max_rel:.3g}"
                f"  {worst}  (atol {self.atol:g}, rtol {self.rtol:g})  {verdict}")


@dataclass
class ParityReport:
    """Served vs reference outputs for one server URL. ``ok`` when every output is in tolerance."""

    url: str
    model: str
    version: int | None
    rows: int
    outputs: list[OutputParity] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.outputs) and all(o.ok for o in self.outputs)

    def text(self) -> str:
        head = "PASS" if self.ok else "FAIL"
        version = f" v{self.version}" if self.version is not None else ""
        lines = [f"{head} {self.model}{version} via {self.url}: {self.rows} rows, "
                 f"{len(self.outputs)} output(s)"]
        lines += [o.line() for o in self.outputs]
        return "\n".join(lines)

    __str__ = text


def _compare(name: str, expected: np.ndarray, actual: np.ndarray, tolerances: Mapping[str, Any]) -> OutputParity:
    from tfship.tolerance import compare_outputs

    diff = compare_outputs({name: expected}, {name: actual}, tolerances)[0]
    worst: int | None = None
    if expected.shape == actual.shape and expected.ndim and expected.size:
        if expected.dtype.kind in "fc":
            e = expected.astype(np.complex128 if expected.dtype.kind == "c" else np.float64)
            gap = np.abs(actual.astype(e.dtype) - e)
            gap = np.where(np.isnan(gap), np.where(np.isnan(e) == np.isnan(actual), 0.0, np.inf), gap)
            per_row = gap.reshape(gap.shape[0], -1).max(axis=1)
            worst = int(np.argmax(per_row))
        else:
            unequal = (expected != actual).reshape(expected.shape[0], -1).any(axis=1)
            worst = int(np.argmax(unequal)) if unequal.any() else None
    return OutputParity(name, str(expected.dtype), diff.ok, diff.max_abs, diff.max_rel, worst,
                        diff.tolerance.atol, diff.tolerance.rtol, diff.reason)


def _as_dict(outputs: Any, names: list[str]) -> dict[str, np.ndarray]:
    if isinstance(outputs, Mapping):
        return {str(k): np.asarray(v) for k, v in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        if len(outputs) != len(names):
            raise ConfigError(f"The reference model returned {len(outputs)} outputs; the served "
                              f"signature has {len(names)}: {names}.")
        return {n: np.asarray(v) for n, v in zip(names, outputs, strict=False)}
    if len(names) != 1:
        raise ConfigError(f"The reference returned one array; the served signature has outputs {names}.")
    return {names[0]: np.asarray(outputs)}


def reference_outputs(reference: Any, inputs: Mapping[str, np.ndarray] | None,
                      output_names: list[str]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], Any]:
    """``(inputs, expected_outputs, tolerances)`` for any supported reference."""
    if isinstance(reference, (str, os.PathLike)):
        from tfship.manifest import load_samples, read_manifest

        sample_inputs, expected = load_samples(reference)
        return (dict(inputs) if inputs is not None else sample_inputs), expected, read_manifest(
            reference).tolerances
    if isinstance(reference, tuple) and len(reference) == 2:
        ref_inputs, ref_outputs = reference
        ref_inputs = ref_inputs if isinstance(ref_inputs, Mapping) else {"": ref_inputs}
        return dict(ref_inputs), _as_dict(ref_outputs, output_names), None
    if callable(reference) or hasattr(reference, "predict"):
        if inputs is None:
            raise ConfigError("check_parity with a Keras model needs inputs= (a dict or array of samples).")
        feed = dict(inputs)
        x = next(iter(feed.values())) if len(feed) == 1 else feed
        predict = getattr(reference, "predict", None)
        result = predict(x, verbose=0) if predict is not None else reference(x)
        return feed, _as_dict(_numpy(result), output_names), None
    raise ConfigError(f"Unsupported parity reference {type(reference).__name__}: give a version dir, "
                      "(inputs, outputs) or a Keras model with inputs=.")


def _numpy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _numpy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_numpy(v) for v in value]
    return np.asarray(value)


def check_parity(client: Any, model: str, reference: Any, *, inputs: Any = None,
                 version: int | None = None, label: str | None = None, signature: str | None = None,
                 tolerances: Mapping[str, Any] | None = None, batch_size: int = 64,
                 raise_on_mismatch: bool = False) -> ParityReport:
    """Compare what ``client`` serves for ``model`` with ``reference`` (see module docstring).

    With a version dir and neither ``version`` nor ``label``, the version the dir was exported as
    is checked. Tolerances are per dtype (``{"float32": (atol, rtol)}``), defaulting to the manifest's or
    :data:`tfship.tolerance.DEFAULT_TOLERANCES`; integer, bool and string outputs must match
    exactly. Raises :class:`ParityError` on mismatch only when ``raise_on_mismatch``.
    """
    from tfship.tolerance import resolve_tolerances

    if isinstance(reference, (str, os.PathLike)) and version is None and label is None:
        # An export's samples belong to its version: compare with that version, not "latest".
        from tfship.manifest import read_manifest

        version = read_manifest(reference).version
    sig = client.signature_info(model, version=version, label=label, signature=signature)
    names = list(sig.outputs)
    if inputs is not None and not isinstance(inputs, Mapping):
        inputs = {next(iter(sig.inputs)): inputs}
    feed, expected, manifest_tols = reference_outputs(reference, inputs, names)
    if "" in feed:  # (array, outputs) reference with an unnamed input
        feed = {next(iter(sig.inputs)): feed.pop("")}
    tols = resolve_tolerances(tolerances) if tolerances is not None else (
        manifest_tols or resolve_tolerances(None))
    served = predict_batches(client, model, feed, batch_size=batch_size, concurrency=2,
                             version=version, label=label, signature=signature)
    served = _as_dict(served, names)
    rows = int(next(iter(feed.values())).shape[0]) if feed else 0
    try:
        answered = client.metadata(model, version=version, label=label).version
    except ServingError:
        answered = version
    report = ParityReport(client.url, model, answered, rows)
    for name, exp in expected.items():
        if name not in served:
            report.outputs.append(OutputParity(name, str(exp.dtype), False, float("inf"), float("inf"),
                                               None, 0.0, 0.0, f"served outputs lack {name!r} "
                                               f"(served: {sorted(served)})"))
            continue
        report.outputs.append(_compare(name, np.asarray(exp), served[name], tols))
    if raise_on_mismatch and not report.ok:
        raise ParityError(report.text())
    return report
