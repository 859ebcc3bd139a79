"""numpy <-> TF Serving REST JSON, shared by the REST server and the REST client.

TF Serving's JSON rules (TF Serving compat spec §6.2): tensors are nested lists, shape from nesting; floats
print as the shortest round-tripping decimal of their own precision with whole numbers as ``3.0``;
non-finite floats are the bare tokens ``NaN``, ``Infinity``, ``-Infinity`` (not valid JSON, but what
TF Serving reads and writes); binary strings travel as ``{"b64": "<base64>"}``.

orjson serializes numpy arrays in C (float32 shortest repr included), so an encoded array is
normally the array itself, handed to :func:`dumps`. Only arrays holding NaN/Inf take a slow path,
pre-rendered as an :class:`orjson.Fragment` because orjson would write ``null``.

>>> dumps({"instances": encode_value(np.array([[1.0, 2.5]], np.float32))})
b'{"instances":[[1.0,2.5]]}'
>>> decode_value([[1, 2]], dtypes.by_name("DT_FLOAT")).dtype
dtype('float32')
"""

from __future__ import annotations

import base64
import binascii
import json as _stdlib_json
import re
import sys
from typing import Any

import numpy as np
import orjson

from tfship.errors import InvalidArgumentError, ServingError, UnimplementedError
from tfship.wire import dtypes
from tfship.wire import numeric_arrays as _arrays
from tfship.wire.tensor import MAX_RANK, as_ndarray

__all__ = [
    "dumps", "loads", "encode_value", "decode_value", "b64_value", "is_b64_object", "MAX_DEPTH",
]

#: Deepest nesting of arrays and objects a document may have (orjson's and simdjson's limit).
#: TF Serving's rapidjson parses iteratively without one, but no tensor nests deeper than
#: MAX_RANK lists, and a limit keeps a million '[' from costing a million stack frames.
MAX_DEPTH = 1024

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
# orjson knows these numpy dtypes natively; everything else is converted first.
_NATIVE_KINDS = "biuf"


def dumps(obj: Any) -> bytes:
    """Serialize a JSON-able object (ndarrays allowed anywhere) to bytes."""
    return orjson.dumps(obj, option=_OPTIONS)


# rapidjson's reason strings (what TF Serving puts in "JSON Parse error: ..."), keyed by the
# stdlib decoder's message prefix.
_REASONS = [
    ("Expecting value", "Invalid value."),
    ("Expecting property name", "Missing a name for object member."),
    ("Expecting ':' delimiter", "Missing a colon after a name of object member."),
    ("Extra data", "The document root must not be followed by other values."),
    ("Unterminated string", "Missing a closing quotation mark in string."),
    ("Invalid \\escape", "Invalid escape character in string."),
    ("Invalid \\uXXXX escape", "Incorrect hex digit after \\u escape in string."),
    ("Invalid control character", "Invalid encoding in string."),
]


def loads(data: bytes | bytearray | str, *, numeric_arrays: bool = False) -> Any:
    """Parse a JSON document the way TF Serving does (``NaN``/``Infinity`` tokens accepted).

    With ``numeric_arrays=True``, large arrays of decimal numbers that are object member values
    (``{"instances": [[0.5, ...], ...]}``, a request's image batch) come back as float64 ndarrays
    instead of nested lists: simdjson parses them in C, several times faster than building
    millions of Python floats, to the same correctly rounded values. Only regular (non-ragged)
    arrays of numbers that open with decimal (non-integer) numbers take that path; anything else,
    and every document with an error, is parsed as usual, so errors and results do not change.
    Safe to call from many threads at once.

    Raises :class:`InvalidArgumentError` with TF Serving's message:
    ``JSON Parse error: The document is empty`` or ``JSON Parse error: <reason> at offset: <n>``,
    where the reason includes rapidjson's ``Number too big to be stored in double.`` (e.g. 1e400)
    and ``The surrogate pair in string is invalid.``, and tfship's nesting limit
    (:data:`MAX_DEPTH`), the same on every path (orjson, the stdlib parser for NaN/Infinity
    documents, the numeric-array fast path).
    """
    if not data or not data.strip():
        raise InvalidArgumentError("JSON Parse error: The document is empty")
    if numeric_arrays and isinstance(data, (bytes, bytearray)) and _arrays.worth_trying(data):
        doc = _arrays.loads_with_numeric_arrays(data)
        if doc is not _arrays.NO_FAST_PATH:
            return doc
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        # NaN/Infinity tokens, or truly malformed: the stdlib parser tells which. orjson stops at
        # the first problem, so its two limits are reported at once (the stdlib parser has
        # neither: it recurses per level and turns 1e400 into inf).
        if exc.msg.startswith("depth limit exceeded"):
            raise _too_deep(exc.pos) from None
        if exc.msg.startswith("number is infinity"):
            raise _too_big(exc.pos) from None
        if "surrogate in string" in exc.msg:
            raise _bad_surrogate(exc.pos) from None
    text = data.decode("utf-8", errors="replace") if isinstance(data, (bytes, bytearray)) else data
    _check_depth(text)
    # A Python hook per number doubles the stdlib parser's time: only documents that may hold a
    # number beyond double range (an exponent of 3+ digits) or int64 (19+ digits) need them.
    hooked = _LONG_NUMBER.search(text) is not None
    try:
        doc = (_stdlib_json.loads(text, parse_int=_parse_int, parse_float=_parse_float) if hooked
               else _stdlib_json.loads(text))
        if "\\u" in text:
            _check_surrogates(text)
        return doc
    except _NumberTooBig as exc:
        raise _too_big(_number_offset(text, exc.token)) from None
    except RecursionError:  # _check_depth leaves the parser room; this is the last resort
        raise _too_deep(0) from None
    except _stdlib_json.JSONDecodeError as exc:
        reason = next((r for prefix, r in _REASONS if exc.msg.startswith(prefix)), None)
        if reason is None:
            reason = (
                "Missing a comma or '}' after an object member."
                if exc.msg.startswith("Expecting ',' delimiter") and _inside_object(text, exc.pos)
                else "Missing a comma or ']' after an array element."
                if exc.msg.startswith("Expecting ',' delimiter")
                else exc.msg + "."
            )
        raise InvalidArgumentError(f"JSON Parse error: {reason} at offset: {exc.pos}") from None


def _too_deep(pos: int) -> ServingError:
    return InvalidArgumentError(
        f"JSON Parse error: Arrays and objects nest deeper than {MAX_DEPTH} levels at offset: "
        f"{pos}. A tensor has at most {MAX_RANK} dimensions: check the brackets of the body."
    )


def _too_big(pos: int) -> ServingError:
    # rapidjson's reason (what TF Serving answers), then how to fix it
    return InvalidArgumentError(
        f"JSON Parse error: Number too big to be stored in double. at offset: {pos}. "
        "Send numbers within +-1.7976931348623157e308, or Infinity/-Infinity."
    )


def _bad_surrogate(pos: int) -> ServingError:
    return InvalidArgumentError(
        f"JSON Parse error: The surrogate pair in string is invalid. at offset: {pos}. "
        "Escape characters beyond U+FFFF as a high + low surrogate pair, or send raw UTF-8."
    )


_STRING = re.compile(r'"(?:\\.|[^"\\])*"')


def _check_surrogates(text: str) -> None:
    """Reject lone UTF-16 surrogate escapes (rapidjson and orjson do; the stdlib parser keeps
    them as unencodable characters)."""
    for match in _STRING.finditer(text):
        token = match.group(0)
        if "\\u" in token:
            try:
                _stdlib_json.loads(token).encode("utf-8")
            except UnicodeEncodeError as exc:
                raise _bad_surrogate(match.start() + 1 + exc.start) from None


_LONG_NUMBER = re.compile(r"[0-9]{19}|[eE][-+]?[0-9]{3}")


class _NumberTooBig(ValueError):
    def __init__(self, token: str) -> None:
        super().__init__(token)
        self.token = token


_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1


def _parse_float(token: str) -> float:
    value = float(token)
    if value in (float("inf"), float("-inf")):
        raise _NumberTooBig(token)
    return value


def _parse_int(token: str) -> int | float:
    """Integers as orjson (and rapidjson) read them: exact within int64/uint64, else a double."""
    if len(token) < 19:
        return int(token)
    if len(token) <= 21:  # long enough for any int64/uint64, short enough for int()
        value = int(token)
        if _INT64_MIN <= value <= _UINT64_MAX:
            return value
    return _parse_float(token)


# A string (skipped) or a number token, as the stdlib scanner matches them.
_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)')


def _number_offset(text: str, token: str) -> int:
    for match in _TOKEN.finditer(text):
        if match.group(1) == token:
            return match.start()
    return 0  # pragma: no cover - the parser saw the token in this text


# Nesting change per byte: +1 for '[' and '{', -1 for ']' and '}'.
_DEPTH_DELTA = np.zeros(256, np.int8)
_DEPTH_DELTA[[ord("["), ord("{")]] = 1
_DEPTH_DELTA[[ord("]"), ord("}")]] = -1


def _check_depth(text: str) -> None:
    """Raise the depth error if ``text`` nests deeper than MAX_DEPTH (outside strings).

    Only for the stdlib parser's documents (orjson checked the rest itself). Cheap unless the
    text has more than MAX_DEPTH brackets, and then vectorized.
    """
    brackets = text.count("[") + text.count("{")
    if brackets > 200:
        # The stdlib parser recurses in C once per level, counted against the recursion limit:
        # leave it room for MAX_DEPTH levels on top of the caller's frames.
        needed = MAX_DEPTH + 1000
        if sys.getrecursionlimit() < needed:
            sys.setrecursionlimit(needed)
    if brackets <= MAX_DEPTH:
        return
    # Brackets inside strings do not nest: strings become spaces (same length, same offsets).
    masked = _STRING.sub(lambda m: " " * len(m.group(0)), text)
    codes = np.frombuffer(masked.encode("latin-1", errors="replace"), np.uint8)
    depth = np.cumsum(_DEPTH_DELTA[codes], dtype=np.int64)
    over = np.flatnonzero(depth > MAX_DEPTH)
    if over.size:
        raise _too_deep(int(over[0]))


def _inside_object(text: str, pos: int) -> bool:
    depth: list[str] = []
    for ch in re.sub(r'"(?:\\.|[^"\\])*"', '""', text[:pos]):
        if ch in "[{":
            depth.append(ch)
        elif ch in "]}" and depth:
            depth.pop()
    return bool(depth) and depth[-1] == "{"


# --------------------------------------------------------------------------- encode


def b64_value(data: bytes) -> dict[str, str]:
    """``{"b64": "<base64>"}``, TF Serving's JSON form of binary data."""
    return {"b64": base64.b64encode(data).decode("ascii")}


def is_b64_object(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def encode_value(array: Any, *, b64: bool = False) -> Any:
    """A JSON-able value for ``array`` (pass the result to :func:`dumps`).

    Strings are emitted raw when they are UTF-8 text, as ``{"b64": ...}`` when ``b64=True`` (TF
    Serving does this for DT_STRING outputs whose alias ends in ``_bytes``) or when they are not
    valid UTF-8 (JSON cannot carry them otherwise).
    """
    arr = as_ndarray(array)
    if arr.dtype.kind == "O":
        return _strings_to_json(arr, b64)
    if arr.dtype.kind == "c":
        raise UnimplementedError(f"Conversion of {arr.dtype} tensors to JSON is not supported.")
    if arr.dtype.kind not in _NATIVE_KINDS or arr.dtype.itemsize > 8:
        arr = arr.astype(np.float32)  # bfloat16 and friends print as float32, like TF Serving
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        return orjson.Fragment(_nonfinite_json(arr))
    if arr.ndim == 0:
        return arr.item()
    return np.ascontiguousarray(arr)


def _nonfinite_json(arr: np.ndarray) -> bytes:
    # float32 values go through str() of the float32 so 0.1f prints as 0.1, as orjson would.
    if arr.dtype == np.float32:
        items: Any = np.vectorize(lambda v: float(str(np.float32(v))), otypes=[object])(arr).tolist()
    else:
        items = arr.astype(np.float64).tolist()
    return _stdlib_json.dumps(items, separators=(",", ":"), allow_nan=True).encode()


def _strings_to_json(arr: np.ndarray, b64: bool) -> Any:
    def one(item: bytes) -> Any:
        if b64:
            return b64_value(item)
        try:
            return item.decode("utf-8")
        except UnicodeDecodeError:
            return b64_value(item)

    if arr.ndim == 0:
        return one(arr.item())
    flat = [one(x) for x in arr.reshape(-1)]
    return _nest(flat, arr.shape)


def _nest(flat: list[Any], shape: tuple[int, ...]) -> Any:
    if len(shape) <= 1:
        return flat
    step = len(flat) // shape[0] if shape[0] else 0
    return [_nest(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


# --------------------------------------------------------------------------- decode


def decode_value(value: Any, dtype: dtypes.DType | None = None) -> np.ndarray:
    """Convert a parsed JSON value (scalar or nested lists) into an ndarray of ``dtype``.

    Follows TF Serving's conversion rules: float types accept any JSON number, integer types
    require integers, bool requires true/false, strings require strings or ``{"b64": ...}``.
    ``dtype=None`` infers (floats become float32, as TF Serving models mostly use).
    """
    if dtype is not None and dtype.numpy is None:
        raise UnimplementedError(f"Conversion of JSON Value to {dtype.json_name} is not supported.")
    if dtype is not None and (dtype.numpy.kind == "c" or dtype.enum in (14, 19)):  # type: ignore[union-attr]
        raise UnimplementedError(
            f"Conversion of JSON Value of type {dtype.json_name} is not supported by TF Serving's "
            "REST API; send it over gRPC."
        )
    shape = _shape_of(value)
    if len(shape) > MAX_RANK:
        raise InvalidArgumentError(
            f"JSON Value nests lists {len(shape)} levels deep, but a tensor has at most "
            f"{MAX_RANK} dimensions: check the brackets of the value."
        )
    if dtype is not None and dtype.is_string:
        return _decode_strings(value, dtype)
    try:
        arr = np.asarray(value)
    except ValueError:
        raise InvalidArgumentError(
            "Tensor values are ragged: every list at the same nesting level must have the same length."
        ) from None
    if arr.dtype.kind == "O" or arr.dtype.kind in "US":
        if dtype is None and _all_strings(arr):
            return _decode_strings(value, dtypes.by_enum(7))
        expected = dtype.json_name if dtype is not None else "number"
        raise InvalidArgumentError(
            f"JSON Value: {_short(value)} is not of expected type: {expected}"
            if arr.dtype.kind in "US"
            else "Tensor values are ragged or mix types: every list at the same nesting level must "
            f"have the same length and hold values of one type (expected {expected})."
        )
    if dtype is None:
        return arr.astype(np.float32) if arr.dtype.kind == "f" else arr
    kind = dtype.numpy.kind  # type: ignore[union-attr]
    if kind in "iu" and arr.dtype.kind == "f" and _all_ints(value):
        # numpy infers float64 when ints straddle int64 and uint64 (e.g. [0, 2**64-1]); parse
        # exactly in the target type instead (out-of-range ints raise OverflowError below).
        try:
            return np.array(value, dtype=dtype.numpy)  # type: ignore[arg-type]
        except OverflowError:
            raise InvalidArgumentError(
                f"JSON Value out of range for {dtype.json_name}: {_short(_first(value))}"
            ) from None
    ok = (
        (kind == "f" and arr.dtype.kind in "iuf")
        or (kind in "iu" and arr.dtype.kind in "iu")
        or (kind == "b" and arr.dtype.kind == "b")
        or arr.size == 0
    )
    if not ok:
        raise InvalidArgumentError(
            f"JSON Value: {_short(_first(value))} is not of expected type: {dtype.json_name}"
        )
    if kind in "iu" and arr.size:
        info = np.iinfo(dtype.numpy)  # type: ignore[arg-type]
        if arr.min() < info.min or arr.max() > info.max:
            raise InvalidArgumentError(
                f"JSON Value out of range for {dtype.json_name}: values must lie in "
                f"[{info.min}, {info.max}]."
            )
    return arr.astype(dtype.numpy)  # type: ignore[arg-type]


def _decode_strings(value: Any, dtype: dtypes.DType) -> np.ndarray:
    def one(item: Any) -> bytes:
        if isinstance(item, str):
            return item.encode("utf-8")
        if is_b64_object(item):
            encoded = item["b64"]
            try:
                return base64.b64decode(encoded, validate=True) if isinstance(encoded, str) else _bad_b64(item)
            except (binascii.Error, ValueError):
                return _bad_b64(item)
        raise InvalidArgumentError(f"JSON Value: {_short(item)} is not of expected type: {dtype.json_name}")

    shape = _shape_of(value)
    flat: list[bytes] = []
    _flatten(value, flat, one)
    out = np.empty(len(flat), object)
    out[:] = flat
    return out.reshape(shape)


def _bad_b64(item: Any) -> bytes:
    raise InvalidArgumentError(
        f"Unable to base64 decode {_short(item)}: the \"b64\" value must be standard base64 "
        "(RFC 4648, with padding)."
    )


def _shape_of(value: Any) -> tuple[int, ...]:
    shape: list[int] = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    if isinstance(value, np.ndarray):  # loads(numeric_arrays=True) puts arrays where lists were
        shape.extend(value.shape)
    return tuple(shape)


def _flatten(value: Any, out: list[Any], convert: Any, depth: int = 0, shape: tuple[int, ...] = ()) -> None:
    if not shape:
        shape = _shape_of(value)
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if depth < len(shape):
        if not isinstance(value, list) or len(value) != shape[depth]:
            raise InvalidArgumentError(
                "Tensor values are ragged: every list at the same nesting level must have the same length."
            )
        for item in value:
            _flatten(item, out, convert, depth + 1, shape)
    else:
        if isinstance(value, list):
            raise InvalidArgumentError(
                "Tensor values are ragged: every list at the same nesting level must have the same length."
            )
        out.append(convert(value))


def _all_ints(value: Any) -> bool:
    if isinstance(value, list):
        return all(_all_ints(v) for v in value)
    return isinstance(value, int) and not isinstance(value, bool)


def _all_strings(arr: np.ndarray) -> bool:
    return all(isinstance(x, str) or is_b64_object(x) for x in arr.reshape(-1))


def _first(value: Any) -> Any:
    while isinstance(value, list) and value:
        value = value[0]
    if isinstance(value, np.ndarray):
        return value.reshape(-1)[0].item() if value.size else []
    return value


def _short(value: Any) -> str:
    try:
        text = dumps(value).decode() if not isinstance(value, float) else repr(value)
    except (TypeError, ValueError):  # nested too deep for orjson (255 levels)
        text = f"<{type(value).__name__} nested too deep to show>"
    return text if len(text) <= 80 else text[:77] + "..."


def nested_shape(value: Any) -> tuple[int, ...]:
    """The tensor shape a JSON value's list nesting implies (first element at each level).

    ndarrays from ``loads(..., numeric_arrays=True)`` count as the nested lists they replace.
    """
    return _shape_of(value)
