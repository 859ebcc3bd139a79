"""Predict requests read from their wire bytes, so large input tensors are never copied.

grpcio hands a servicer a fully parsed ``PredictRequest``. For a 1024-row CNN batch that is three
copies of 3.2 MB before the model sees it (upb's parse, the ``tensor_content`` bytes object, the
writable ndarray), each in fresh memory that page-faults in. :func:`read_predict_request` is the
Predict method's request deserializer instead: it splits the bytes with the client's own framing
(:func:`tfship.wire.predict.split_predict_request`), parses ``model_spec`` and ``output_filter`` with
the real message class and leaves each input as a zero-copy view of its TensorProto bytes, decoded
later (inside the RPC, so a bad tensor is an INVALID_ARGUMENT for that call, in the order TF Serving
reports errors) into read-only arrays that point into the request bytes.

Anything unusual on the wire (a wrong wire type, invalid UTF-8, truncation) falls back to the
generated parser, so malformed requests fail exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError
from tensorflow_serving.apis import predict_pb2

from tfship.errors import InvalidArgumentError, ServingError
from tfship.wire.predict import split_predict_request
from tfship.wire.tensor import decode_tensor, to_ndarray

__all__ = [
    "WirePredictRequest", "MalformedRequest", "read_predict_request", "predict_inputs", "request_reader",
]

# Below this the generated (C) parser is cheaper than walking the wire in Python
_VIEW_MIN_BYTES = 1 << 16


@dataclass
class WirePredictRequest:
    """A PredictRequest whose inputs are still serialized TensorProtos.

    ``request`` is a real ``PredictRequest`` with ``model_spec`` and ``output_filter`` set and no
    inputs; ``inputs`` maps each alias to its TensorProto bytes (views into the wire bytes).
    """

    request: Any
    inputs: dict[str, memoryview]

    # the attributes the servicer reads, so both request kinds look alike to it
    @property
    def model_spec(self) -> Any:
        return self.request.model_spec

    @property
    def output_filter(self) -> Any:
        return self.request.output_filter

    def HasField(self, name: str) -> bool:  # noqa: N802 - mirrors the protobuf message method
        return bool(self.request.HasField(name))


@dataclass(frozen=True)
class MalformedRequest:
    """What a request deserializer returns for bytes that are not a valid request message.

    grpcio answers a deserializer's exception with INTERNAL ("Exception deserializing request!"),
    which blames the server; the servicer answers this with INVALID_ARGUMENT instead.
    """

    message_type: str
    reason: str

    def error(self) -> ServingError:
        return InvalidArgumentError(
            f"Could not parse the request as a {self.message_type} ({self.reason}): send a "
            "serialized tensorflow.serving message built with the generated protobuf classes."
        )


def request_reader(message_class: Any) -> Any:
    """A request deserializer for ``message_class`` that returns :class:`MalformedRequest`
    instead of raising on bad bytes."""
    name = message_class.DESCRIPTOR.full_name

    def read(data: bytes) -> Any:
        try:
            return message_class.FromString(data)
        except (DecodeError, ValueError, RuntimeError) as exc:
            return MalformedRequest(name, str(exc) or type(exc).__name__)

    return read


_read_generated = request_reader(predict_pb2.PredictRequest)


def read_predict_request(data: bytes) -> WirePredictRequest | MalformedRequest | Any:
    """The Predict request deserializer: a :class:`WirePredictRequest` for large requests, else
    (or when the bytes are unusual) the parsed message.

    >>> from tfship.wire.tensor import to_tensor_proto
    >>> req = predict_pb2.PredictRequest()
    >>> req.model_spec.name = "m"
    >>> _ = to_tensor_proto(np.zeros((128, 128), np.float32), req.inputs["x"])
    >>> wire = read_predict_request(req.SerializeToString())
    >>> x = predict_inputs(wire)["x"]
    >>> wire.model_spec.name, x.shape, x.flags.writeable
    ('m', (128, 128), False)
    """
    if len(data) < _VIEW_MIN_BYTES:
        return _read_generated(data)
    try:
        return _read(data)
    except (InvalidArgumentError, UnicodeDecodeError, ValueError, DecodeError):
        return _read_generated(data)


def _read(data: bytes) -> WirePredictRequest:
    parts = split_predict_request(data)
    request = predict_pb2.PredictRequest()
    for spec in parts.model_spec:
        request.model_spec.SetInParent()
        request.model_spec.MergeFromString(bytes(spec))
    request.output_filter.extend(parts.output_filter)
    return WirePredictRequest(request, parts.inputs)


def predict_inputs(request: WirePredictRequest | Any) -> dict[str, np.ndarray]:
    """The request's inputs as arrays (read-only views into the request bytes where possible).

    A tensor that cannot be decoded is INVALID_ARGUMENT ``tensor parsing error: <alias>. <why>``
    (upstream's wording, then the reason).
    """
    wire = isinstance(request, WirePredictRequest)
    out: dict[str, np.ndarray] = {}
    for alias, tensor in request.inputs.items():
        try:
            out[alias] = decode_tensor(tensor, writable=False) if wire else to_ndarray(tensor)
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(f"tensor parsing error: {alias}. {exc.message}") from None
    return out
