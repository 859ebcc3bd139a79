"""tf.Example features for Classify/Regress: dicts in, protos (gRPC) or JSON objects (REST) out.

An example is a dict ``{feature_name: value}``; a value is a number, str/bytes, or a list of one
kind. Python floats become ``float_list``, ints and bools ``int64_list``, str/bytes ``bytes_list``
(the same mapping TF Serving's REST API applies, TF Serving compat spec §6.3).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tfship.errors import InvalidArgumentError
from tfship.wire.json import b64_value
from tfship.wire.protos import serving_wire_pb2 as pb

__all__ = ["example_proto", "example_json", "input_proto"]

Example = Mapping[str, Any]


def _values(name: str, value: Any) -> tuple[str, list[Any]]:
    items = list(np.asarray(value, dtype=object).reshape(-1)) if isinstance(
        value, (list, tuple, np.ndarray)) else [value]
    if not items:
        raise InvalidArgumentError(f"Feature {name!r} is an empty list; give it at least one value.")
    kinds = set()
    for item in items:
        if isinstance(item, (bool, np.bool_, int, np.integer)):
            kinds.add("int64")
        elif isinstance(item, (float, np.floating)):
            kinds.add("float")
        elif isinstance(item, (str, bytes)):
            kinds.add("bytes")
        else:
            raise InvalidArgumentError(
                f"Feature {name!r} has a value of type {type(item).__name__}; use numbers, str or bytes."
            )
    if kinds == {"int64", "float"}:
        kinds = {"float"}
    if len(kinds) != 1:
        raise InvalidArgumentError(f"Feature {name!r} mixes strings and numbers; use one kind per feature.")
    return kinds.pop(), items


def example_proto(example: Example | bytes) -> pb.Example:
    """A ``tf.Example`` (our TF-free class) from a feature dict, or parsed from serialized bytes."""
    if isinstance(example, (bytes, bytearray)):
        return pb.Example.FromString(bytes(example))
    proto = pb.Example()
    for name, value in example.items():
        kind, items = _values(name, value)
        feature = proto.features.feature[name]
        if kind == "float":
            feature.float_list.value.extend(float(x) for x in items)
        elif kind == "int64":
            feature.int64_list.value.extend(int(x) for x in items)
        else:
            feature.bytes_list.value.extend(x.encode() if isinstance(x, str) else x for x in items)
    return proto


def input_proto(examples: Sequence[Example | bytes], context: Example | None = None) -> pb.Input:
    if not examples:
        raise InvalidArgumentError("No examples given: classify/regress need at least one example.")
    message = pb.Input()
    if context is None:
        message.example_list.examples.extend(example_proto(e) for e in examples)
    else:
        message.example_list_with_context.examples.extend(example_proto(e) for e in examples)
        message.example_list_with_context.context.CopyFrom(example_proto(context))
    return message


def example_json(example: Example | bytes) -> dict[str, Any]:
    """The REST JSON object for one example (bytes values travel as ``{"b64": ...}``)."""
    if isinstance(example, (bytes, bytearray)):
        example = _features_of(pb.Example.FromString(bytes(example)))
    out: dict[str, Any] = {}
    for name, value in example.items():
        kind, items = _values(name, value)
        if kind == "float":
            # A whole float must keep its ".0" or the server reads it as an int64 feature.
            conv: list[Any] = [float(x) for x in items]
        elif kind == "int64":
            conv = [int(x) for x in items]
        else:
            conv = [x if isinstance(x, str) else _bytes_json(x) for x in items]
        out[name] = conv[0] if len(conv) == 1 and not isinstance(value, (list, tuple, np.ndarray)) else conv
    return out


def _bytes_json(data: bytes) -> Any:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return b64_value(data)


def _features_of(proto: pb.Example) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, feature in proto.features.feature.items():
        kind = feature.WhichOneof("kind")
        out[name] = list(getattr(feature, kind).value) if kind else []
    return out
