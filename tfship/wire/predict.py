"""``tensorflow.serving.PredictRequest``/``PredictResponse`` framing, written once for both sides.

The client writes requests and reads responses here; the server's Predict deserializer
(``tfship.serving.grpc.predict_request``) splits requests here. Tensors stay serialized
TensorProto bytes (:mod:`tfship.wire.tensor` encodes and decodes them), so a large input or
output is spliced into or viewed out of the message bytes, never copied through a message object.

>>> import numpy as np
>>> from tfship.wire.protos import serving_wire_pb2 as pb
>>> data = encode_predict_request(pb.ModelSpec(name="m").SerializeToString(), {"x": np.ones(3)}, ["y"])
>>> parts = split_predict_request(data)
>>> sorted(parts.inputs), parts.output_filter
(['x'], ['y'])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from tfship.wire.fields import WT_LEN, iter_fields, length_key
from tfship.wire.protos import serving_wire_pb2 as pb
from tfship.wire.tensor import decode_tensor, encode_tensor

__all__ = [
    "REQUEST_MODEL_SPEC", "REQUEST_INPUTS", "REQUEST_OUTPUT_FILTER", "RESPONSE_OUTPUTS", "RESPONSE_MODEL_SPEC",
    "PredictRequestParts", "encode_predict_request", "split_predict_request", "decode_predict_response",
]

# Field numbers (tensorflow_serving/apis/predict.proto); map entries are {1: key, 2: value}.
REQUEST_MODEL_SPEC, REQUEST_INPUTS, REQUEST_OUTPUT_FILTER = 1, 2, 3
RESPONSE_OUTPUTS, RESPONSE_MODEL_SPEC = 1, 2
_KEY, _VALUE = 1, 2


def encode_predict_request(model_spec: bytes, inputs: Mapping[str, np.ndarray],
                           output_filter: Sequence[str] = ()) -> bytes:
    """Serialized PredictRequest from a serialized ``ModelSpec`` and arrays (sent as ``tensor_content``)."""
    pieces: list[bytes] = [length_key(REQUEST_MODEL_SPEC, len(model_spec)), model_spec]
    for name, array in inputs.items():
        key = name.encode("utf-8")
        tensor = encode_tensor(array)
        entry_key = length_key(_KEY, len(key))
        entry_value = length_key(_VALUE, len(tensor))
        size = len(entry_key) + len(key) + len(entry_value) + len(tensor)
        pieces += [length_key(REQUEST_INPUTS, size), entry_key, key, entry_value, tensor]
    for alias in output_filter:
        data = alias.encode("utf-8")
        pieces += [length_key(REQUEST_OUTPUT_FILTER, len(data)), data]
    return b"".join(pieces)


@dataclass
class PredictRequestParts:
    """A PredictRequest split on the wire: ``model_spec`` as its serialized occurrences (a message
    field seen twice is their merge), each input as a view of its TensorProto bytes."""

    model_spec: list[memoryview] = field(default_factory=list)
    inputs: dict[str, memoryview] = field(default_factory=dict)
    output_filter: list[str] = field(default_factory=list)


def split_predict_request(data: bytes | memoryview) -> PredictRequestParts:
    """Split serialized PredictRequest bytes without copying the input tensors.

    Raises ``ValueError`` (or ``UnicodeDecodeError``) for anything the generated parser would read
    differently - a wrong wire type, invalid UTF-8 - and ``InvalidArgumentError`` for truncation;
    callers fall back to the generated parser then. Unknown fields are skipped, as the generated
    parser keeps but never reads them.
    """
    parts = PredictRequestParts()
    for number, wire, value in iter_fields(data):
        if number not in (REQUEST_MODEL_SPEC, REQUEST_INPUTS, REQUEST_OUTPUT_FILTER):
            continue
        if wire != WT_LEN or not isinstance(value, memoryview):
            raise ValueError(f"PredictRequest field {number} is not length-delimited")
        if number == REQUEST_INPUTS:
            key, tensors = "", []
            for entry_number, entry_wire, entry_value in iter_fields(value):
                if entry_number not in (_KEY, _VALUE):
                    continue
                if entry_wire != WT_LEN or not isinstance(entry_value, memoryview):
                    raise ValueError("map entry field is not length-delimited")
                if entry_number == _KEY:
                    key = str(entry_value, "utf-8")
                else:
                    tensors.append(entry_value)
            # a message field seen twice is merged, and concatenated bytes parse as that merge;
            # for the map itself the last entry of a key wins
            parts.inputs[key] = tensors[0] if len(tensors) == 1 else memoryview(b"".join(tensors))
        elif number == REQUEST_MODEL_SPEC:
            parts.model_spec.append(value)
        else:
            parts.output_filter.append(str(value, "utf-8"))
    return parts


def decode_predict_response(data: bytes) -> tuple[dict[str, np.ndarray], int | None]:
    """``(outputs, version)`` from serialized PredictResponse bytes."""
    outputs: dict[str, np.ndarray] = {}
    version: int | None = None
    for number, _, value in iter_fields(data):
        if not isinstance(value, memoryview):
            continue
        if number == RESPONSE_OUTPUTS:
            key, tensor = "", memoryview(b"")
            for n, _, v in iter_fields(value):
                if n == _KEY and isinstance(v, memoryview):
                    key = bytes(v).decode("utf-8")
                elif n == _VALUE and isinstance(v, memoryview):
                    tensor = v
            outputs[key] = decode_tensor(tensor)
        elif number == RESPONSE_MODEL_SPEC:
            spec = pb.ModelSpec.FromString(bytes(value))
            version = spec.version.value if spec.HasField("version") else None
    return outputs, version
