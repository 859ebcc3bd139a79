"""Protobuf wire-format primitives: varints, field keys, length-delimited fields, field iteration.

:mod:`tfship.wire.tensor` and :mod:`tfship.wire.predict` read and write message bytes directly
(so large tensors are never copied through Python-level repeated fields); both build on these.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tfship.errors import InvalidArgumentError

__all__ = [
    "WT_VARINT", "WT_I64", "WT_LEN", "WT_I32", "varint", "read_varint", "length_key", "len_field",
    "iter_fields",
]

#: Wire types (https://protobuf.dev/programming-guides/encoding/#structure).
WT_VARINT, WT_I64, WT_LEN, WT_I32 = 0, 1, 2, 5


def varint(value: int) -> bytes:
    """``value`` (non-negative) as a protobuf base-128 varint."""
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def read_varint(view: memoryview, pos: int) -> tuple[int, int]:
    """``(value, next_pos)`` for the varint at ``view[pos:]`` (IndexError when truncated)."""
    result = shift = 0
    while True:
        byte = view[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def length_key(field: int, size: int) -> bytes:
    """Key and length of a length-delimited field ``field`` whose payload has ``size`` bytes."""
    return varint((field << 3) | WT_LEN) + varint(size)


def len_field(field: int, payload: bytes) -> bytes:
    """A whole length-delimited field: key, length, payload."""
    return length_key(field, len(payload)) + payload


def iter_fields(buf: bytes | memoryview) -> Iterator[tuple[int, int, Any]]:
    """Yield ``(field_number, wire_type, value)`` for each top-level field of a serialized message.

    ``value`` is an int for varints and a zero-copy memoryview for everything else. Used to read
    tensors straight out of message bytes without a second copy.
    """
    view = memoryview(buf)
    pos, end = 0, len(view)
    try:
        while pos < end:
            key, pos = read_varint(view, pos)
            number, wire = key >> 3, key & 7
            if wire == WT_LEN:
                size, pos = read_varint(view, pos)
                if pos + size > end:
                    raise IndexError
                yield number, wire, view[pos : pos + size]
                pos += size
            elif wire == WT_VARINT:
                value, pos = read_varint(view, pos)
                yield number, wire, value
            elif wire in (WT_I64, WT_I32):
                width = 8 if wire == WT_I64 else 4
                yield number, wire, view[pos : pos + width]
                pos += width
            else:
                raise IndexError
    except IndexError:
        raise InvalidArgumentError("Malformed protobuf bytes (truncated or invalid wire type).") from None
