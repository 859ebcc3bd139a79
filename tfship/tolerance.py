"""Per-dtype tolerances and output comparison (TF-free: the client's parity checks use it too).

Floats compare with ``|actual - expected| <= atol + rtol * |expected|`` (numpy's ``isclose``);
integers, booleans and strings must be equal. NaNs must sit at the same places.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["Tolerance", "DEFAULT_TOLERANCES", "OutputDiff", "resolve_tolerances", "compare_outputs"]


@dataclass(frozen=True)
class Tolerance:
    """Allowed difference for one dtype: ``|a - e| <= atol + rtol * |e|``."""

    atol: float
    rtol: float


#: Defaults by numpy dtype name. Float32 leaves room for graph-vs-eager kernel differences
#: (oneDNN fusions reorder sums); exact types must match exactly.
DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "float16": Tolerance(1e-2, 1e-2),
    "bfloat16": Tolerance(5e-2, 5e-2),
    "float32": Tolerance(1e-5, 1e-4),
    "float64": Tolerance(1e-10, 1e-8),
    "complex64": Tolerance(1e-5, 1e-4),
    "complex128": Tolerance(1e-10, 1e-8),
}
_EXACT = Tolerance(0.0, 0.0)


def resolve_tolerances(
    overrides: Mapping[str, Tolerance | tuple[float, float] | Mapping[str, float]] | None = None,
) -> dict[str, Tolerance]:
    """Defaults updated with ``overrides`` (dtype name -> Tolerance, (atol, rtol) or dict)."""
    merged = dict(DEFAULT_TOLERANCES)
    for dtype, value in (overrides or {}).items():
        key = np.dtype(dtype).name if dtype != "bfloat16" else dtype
        if isinstance(value, Tolerance):
            merged[key] = value
        elif isinstance(value, Mapping):
            merged[key] = Tolerance(float(value["atol"]), float(value["rtol"]))
        else:
            atol, rtol = value
            merged[key] = Tolerance(float(atol), float(rtol))
    return merged


@dataclass(frozen=True)
class OutputDiff:
    """How one output differs: max absolute / relative difference and whether it is within bounds."""

    name: str
    ok: bool
    max_abs: float
    max_rel: float
    tolerance: Tolerance
    reason: str = ""

    def describe(self) -> str:
        if self.reason:
            return f"{self.name}: {self.reason}"
        return (
            f"{self.name}: max abs diff {self.max_abs:.3g}, max rel diff {self.max_rel:.3g} "
            f"(allowed atol {self.tolerance.atol:g}, rtol {self.tolerance.rtol:g})"
        )


def _compare_one(name: str, expected: np.ndarray, actual: np.ndarray,
                 tolerances: Mapping[str, Tolerance]) -> OutputDiff:
    expected = np.asarray(expected)
    actual = np.asarray(actual)
    tol = tolerances.get(expected.dtype.name, _EXACT)
    if expected.shape != actual.shape:
        return OutputDiff(name, False, float("inf"), float("inf"), tol,
                          f"shape {actual.shape} differs from expected {expected.shape}")
    if expected.dtype.kind in "OSU" or actual.dtype.kind in "OSU":
        as_bytes = np.vectorize(lambda v: v.encode() if isinstance(v, str) else bytes(v), otypes=[object])
        equal = bool(expected.size == 0 or np.array_equal(as_bytes(expected), as_bytes(actual)))
        return OutputDiff(name, equal, 0.0 if equal else float("inf"),
                          0.0 if equal else float("inf"), _EXACT, "" if equal else "strings differ")
    e = expected.astype(np.complex128 if expected.dtype.kind == "c" else np.float64)
    a = actual.astype(e.dtype)
    if e.size == 0:
        return OutputDiff(name, True, 0.0, 0.0, tol)
    nan_e, nan_a = np.isnan(e), np.isnan(a)
    if not np.array_equal(nan_e, nan_a):
        return OutputDiff(name, False, float("nan"), float("nan"), tol, "NaNs at different places")
    finite = ~nan_e
    diff = np.abs(a[finite] - e[finite])
    same = a[finite] == e[finite]  # equal infinities have diff nan
    diff = np.where(same, 0.0, diff)
    scale = np.abs(e[finite])
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(diff == 0, 0.0, diff / scale)
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = float(rel.max()) if rel.size else 0.0
    ok = bool(np.all(diff <= tol.atol + tol.rtol * scale))
    return OutputDiff(name, ok, max_abs, max_rel, tol)


def compare_outputs(
    expected: Mapping[str, np.ndarray],
    actual: Mapping[str, np.ndarray],
    tolerances: Mapping[str, Tolerance] | None = None,
) -> list[OutputDiff]:
    """Compare every expected output with ``actual`` (missing outputs count as mismatches).

    >>> import numpy as np
    >>> [d.ok for d in compare_outputs({"y": np.ones(2, "float32")}, {"y": np.ones(2, "float32")})]
    [True]
    """
    tols = resolve_tolerances(None) if tolerances is None else dict(tolerances)
    diffs = []
    for name, exp in expected.items():
        if name not in actual:
            diffs.append(OutputDiff(name, False, float("inf"), float("inf"), _EXACT, "output missing"))
        else:
            diffs.append(_compare_one(name, exp, actual[name], tols))
    return diffs
