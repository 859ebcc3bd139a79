"""Large numeric arrays of a JSON document, parsed straight to ndarrays (:func:`tfship.wire.json.loads`
with ``numeric_arrays=True``).

A :predict body is mostly a few big arrays of decimal numbers. orjson makes a Python float of
each number and numpy then walks the nested lists; simdjson parses the array and flattens it to
doubles in C (several times faster; README, "Server benchmark"), correctly rounded like orjson. What its
Python API does not give is the nesting (as_buffer flattens [[1, 2], [3]] like [[1], [2, 3]]), so
the regularity of each array is proved separately, exactly, before it becomes an ndarray.

Without pysimdjson (a base dependency; only a platform without a wheel lacks it) large arrays
take the slow path. The numpy.fromstring path this replaced was slower than orjson for 2-D
batches and accepted invalid JSON such as [[1.5,]2.5, ...].
"""

from __future__ import annotations

import functools
import math
import re
import secrets
import threading
from typing import Any

import numpy as np
import orjson

__all__ = ["loads_with_numeric_arrays", "worth_trying", "NO_FAST_PATH", "MIN_BYTES"]

try:
    import simdjson as _simdjson

    _HAVE_SIMDJSON = True
except ImportError:  # pragma: no cover - tests switch _HAVE_SIMDJSON off instead
    _HAVE_SIMDJSON = False

MIN_BYTES = 1 << 16  # smaller flat arrays parse as fast or faster the usual way (orjson)
# ... but not small deeply nested ones: an image batch has a list per pixel, and orjson builds each.
# At one '[' per LIST_BYTES or less, arrays from this
# size on take the fast path.
NESTED_MIN_BYTES = 1 << 12
LIST_BYTES = 64
NO_FAST_PATH = object()
# After an object member's ':': whitespace, then the '[' of an array value.
_ARRAY_VALUE = re.compile(rb"[ \t\r\n]*\[")
_MAX_MEMBERS = 1024  # object members looked at before giving up (a body with many keys parses as usual)
# An integer number (``7``, not ``7.0`` or ``7e0``) between delimiters.
_INT_TOKEN = re.compile(rb"[\[,\s]-?[0-9]+[\],\s]")
_HEAD_BYTES = 4096
_HEAD_VALUES = 64
_NUMBER_CHARS = b"0123456789eE+-. \t\r\n"
# Large arrays are decoded one at a time, with one simdjson parser (not thread-safe; it keeps
# buffers of about 4x the largest document it parsed). pysimdjson holds the GIL while it parses,
# so decoding in parallel gains nothing, and 16 concurrent 8.5 MB decodes thrashed the caches and
# starved the threads reading bodies (REST, MLP batch 1024, 16 clients: 26.7k -> 40.2k rows/s).
_decode_lock = threading.Lock()
_parser: _simdjson.Parser | None = None
_PARSER_MAX_BYTES = 16 << 20  # a parser that parsed more is dropped, freeing its buffers


def worth_trying(data: bytes | bytearray) -> bool:
    """Whether ``data`` is large or nested enough for (and this install has) the fast path."""
    return _HAVE_SIMDJSON and len(data) >= NESTED_MIN_BYTES and _min_span(data) <= len(data)


def _min_span(data: bytes | bytearray) -> int:
    """The smallest array worth the fast path in ``data``."""
    if len(data) < MIN_BYTES and data.count(b"[") * LIST_BYTES >= len(data):
        return NESTED_MIN_BYTES
    return MIN_BYTES


def loads_with_numeric_arrays(data: bytes | bytearray) -> Any:
    """``data`` parsed with its large regular float arrays as float64 ndarrays, or
    :data:`NO_FAST_PATH` when there are none or anything is unusual (the caller then parses the
    whole document the usual way, which also reports errors)."""
    spans = _member_array_spans(data, _min_span(data))
    if not spans:
        return NO_FAST_PATH
    nonce = "tfship-array-" + secrets.token_hex(8)
    pieces: list[bytes | bytearray] = []
    arrays: list[np.ndarray] = []
    pos = 0
    global _parser
    with _decode_lock:
        parser = _parser if _parser is not None else _simdjson.Parser()
        for start, stop in spans:
            array = _numeric_array(parser, data, start, stop)
            if array is None:
                continue
            pieces += [data[pos:start], f'"{nonce}:{len(arrays)}"'.encode()]
            arrays.append(array)
            pos = stop
        _parser = parser if max(stop - start for start, stop in spans) <= _PARSER_MAX_BYTES else None
    if not arrays:
        return NO_FAST_PATH
    pieces.append(data[pos:])
    try:
        # The rest of the document, parsed as usual (duplicate keys, strings, big ints, ...). A
        # span that sat inside a string breaks it here: the whole document then goes the slow way.
        skeleton = orjson.loads(b"".join(pieces))
    except orjson.JSONDecodeError:
        return NO_FAST_PATH
    _put_back(skeleton, nonce + ":", arrays)
    return skeleton


def _member_array_spans(data: bytes | bytearray, min_bytes: int) -> list[tuple[int, int]]:
    """Byte spans ``(start, stop)`` of the large arrays that are object member values (``"x": [``).

    An array of numbers holds no '"' or '}', so it ends at the last ']' before the next of them.
    A span that is not such an array fails in :func:`_numeric_array` (or, inside a string, in
    the caller's skeleton) and stays in the text.
    """
    spans: list[tuple[int, int]] = []
    ahead = [-2, -2]  # the first '"' and '}' at or after the last start (-1: none)
    colon = data.find(b":")
    for _ in range(_MAX_MEMBERS):
        if colon < 0:
            break
        match = _ARRAY_VALUE.match(data, colon + 1)
        if match is None:
            colon = data.find(b":", colon + 1)
            continue
        start = match.end() - 1
        bound = len(data)
        for i, byte in enumerate((b'"', b"}")):
            if -1 != ahead[i] < start:
                ahead[i] = data.find(byte, start)
            if ahead[i] >= 0:
                bound = min(bound, ahead[i])
        stop = data.rfind(b"]", start, bound) + 1
        if stop - start >= min_bytes:
            spans.append((start, stop))
            colon = data.find(b":", stop)
        else:
            colon = data.find(b":", colon + 1)
    return spans


def _numeric_array(parser: _simdjson.Parser, data: bytes | bytearray, start: int, stop: int) -> np.ndarray | None:
    """``data[start:stop]`` as a float64 ndarray if it is a regular array of numbers, else None.

    Arrays opening with an integer stay on the slow path: integer-only arrays must stay exact
    Python ints (int64/uint64 inputs, TF Serving's type errors), and error messages quote the
    first values as parsed (``7`` where a float array would show ``7.0``).
    """
    head = data[start : start + _HEAD_BYTES]
    if head.count(b",") < _HEAD_VALUES or _INT_TOKEN.search(head):
        return None
    view = memoryview(data)[start:stop]
    try:
        root = parser.parse(view)  # ValueError when malformed (NaN, Infinity, 1e400, ...)
        if not isinstance(root, _simdjson.Array):
            return None
        shape = []
        node: Any = root
        while isinstance(node, _simdjson.Array):
            if not len(node):
                return None
            shape.append(len(node))
            node = node[0]
        if not isinstance(node, float):
            return None
        # as_buffer copies into memory of its own (nothing refers to the parser afterwards) and
        # raises TypeError at a string, bool, null or object.
        values = np.frombuffer(root.as_buffer(of_type="d"), np.float64)
        if values.size != math.prod(shape) or not _is_regular(root, shape, view):
            return None
        return values.reshape(shape)
    except (ValueError, TypeError, IndexError, RuntimeError):  # RuntimeError: integer beyond 64 bits
        return None


def _is_regular(root: Any, shape: list[int], view: memoryview) -> bool:
    """Whether the parsed (valid) array ``root`` nests exactly as ``shape`` says, at every level.

    Few lists (a 1024 x 784 batch has 1025): check every list's length, then count '[' in the
    text, which proves no list sits where a number should. Many (a 1024 x 28 x 28 x 1 batch has
    832513): compare the brackets and commas of the text with those of a regular array (looking
    at a list from Python costs about what deleting the numbers from 64 bytes of text does).
    """
    lists = width = 1
    for dim in shape[:-1]:
        width *= dim
        lists += width
    if lists * 64 > len(view):
        return bytes(view).translate(None, _NUMBER_CHARS) == _structure(tuple(shape))
    level = [root]
    for dim in shape[:-1]:
        children: list[Any] = []
        for node in level:
            if len(node) != dim:  # TypeError for a number where a list should be
                return False
            children.extend(node)
        level = children
    last = shape[-1]
    if any(len(node) != last for node in level):
        return False
    text = np.frombuffer(view, np.uint8)
    step = 1 << 18  # in slices: no text-sized temporary (faster, 0.6 vs 0.9 ms for 8.5 MB)
    opening = sum(int(np.count_nonzero(text[i : i + step] == ord("["))) for i in range(0, len(text), step))
    return opening == lists


@functools.lru_cache(maxsize=4)
def _structure(shape: tuple[int, ...]) -> bytes:
    """The brackets and commas of a regular array of ``shape`` (its text without numbers)."""
    text = b"[" + b"," * (shape[-1] - 1) + b"]"
    for dim in reversed(shape[:-1]):
        text = b"[" + b",".join([text] * dim) + b"]"
    return text


def _put_back(doc: Any, prefix: str, arrays: list[np.ndarray]) -> None:
    """Replace the placeholder strings ``prefix + index`` in ``doc`` by ``arrays[index]``."""
    left = len(arrays)
    stack = [doc]
    while stack and left:
        node = stack.pop()
        for key, value in node.items() if isinstance(node, dict) else enumerate(node):
            if isinstance(value, str):
                if value.startswith(prefix):
                    node[key] = arrays[int(value[len(prefix) :])]
                    left -= 1
            elif isinstance(value, (dict, list)):
                stack.append(value)
