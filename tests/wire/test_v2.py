"""The Open Inference Protocol codec: every datatype round-trips, and bad input names its fix."""

from __future__ import annotations

import struct

import ml_dtypes
import numpy as np
import pytest

from tfship.errors import InvalidArgumentError, UnimplementedError
from tfship.wire import v2
from tfship.wire.protos import open_inference_pb2 as pb

ARRAYS = {
    "BOOL": np.array([[True, False, True]]),
    "UINT8": np.array([0, 255], np.uint8), "UINT16": np.array([65535], np.uint16),
    "UINT32": np.array([2**32 - 1], np.uint32), "UINT64": np.array([2**64 - 1, 0], np.uint64),
    "INT8": np.array([-128, 127], np.int8), "INT16": np.array([-3], np.int16),
    "INT32": np.array([[1, -2], [3, 4]], np.int32), "INT64": np.array([-(2**63), 2**62], np.int64),
    "FP16": np.array([1.5, -2.0], np.float16), "FP32": np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
    "FP64": np.array([np.pi]), "BF16": np.array([1.0, 2.5], ml_dtypes.bfloat16),
    "BYTES": np.array([[b"a", b""], [b"\xff\x00", "ünï".encode()]], object),
}


def _equal(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tolist() == b.tolist()


@pytest.mark.parametrize("datatype", sorted(ARRAYS))
def test_every_datatype_round_trips_raw_json_binary_and_proto(datatype: str) -> None:
    x = ARRAYS[datatype]
    assert v2.datatype_of(x) == datatype
    _equal(v2.from_raw(v2.to_raw(x), datatype, x.shape), x)
    for binary in (False, True):
        body, header = v2.request_to_json(v2.InferRequest("m", inputs={"x": x}), binary=binary)
        _equal(v2.request_from_json(body, header, "m").inputs["x"], x)
        body, header = v2.response_to_json(v2.InferResponse("m", "1", outputs={"y": x}), lambda n, b=binary: b)
        _equal(v2.response_from_json(body, header).outputs["y"], x)
    for raw in (True, False):
        data = v2.request_to_proto(v2.InferRequest("m", "3", inputs={"x": x}), raw=raw)
        _equal(v2.request_from_proto(data).inputs["x"], x)
    _equal(v2.response_from_proto(v2.response_to_proto(v2.InferResponse("m", outputs={"y": x}))).outputs["y"], x)


def test_bytes_raw_layout_is_four_byte_little_endian_lengths() -> None:
    raw = v2.to_raw(np.array([b"ab", b"c"], object))
    assert raw == struct.pack("<I", 2) + b"ab" + struct.pack("<I", 1) + b"c"


def test_json_body_with_binary_extension_is_header_then_bytes() -> None:
    x = np.array([1.0, 2.0], np.float32)
    body, header = v2.request_to_json(v2.InferRequest("m", inputs={"x": x}), binary=True)
    assert header is not None and body[header:] == x.tobytes()
    assert b'"binary_data_size":8' in body[:header]


def test_nested_data_and_request_parameters() -> None:
    body = b'{"id":"7","parameters":{"signature_name":"s","binary_data_output":true},' \
           b'"inputs":[{"name":"x","shape":[2,2],"datatype":"INT32","data":[[1,2],[3,4]]}],' \
           b'"outputs":[{"name":"y","parameters":{"binary_data":false}},{"name":"z"}]}'
    req = v2.request_from_json(body, None, "m")
    assert req.id == "7" and req.parameters["signature_name"] == "s"
    np.testing.assert_array_equal(req.inputs["x"], [[1, 2], [3, 4]])
    assert not req.binary_output("y") and req.binary_output("z")


def test_parameters_round_trip_through_proto() -> None:
    params = {"b": True, "i": -3, "u": 2**64 - 1, "f": 0.5, "s": "x"}
    message = pb.ModelInferRequest()
    v2.parameters_to_proto(params, message.parameters)
    assert v2.parameters_from_proto(message.parameters) == params


_BINARY_2 = b'{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}}]}'
_BINARY_1 = b'{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":4}}]}'


@pytest.mark.parametrize(("body", "header", "needle"), [
    (b'{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[1,2]}]}', None, "holds 3 element(s)"),
    (b'{"inputs":[{"name":"x","shape":[1],"datatype":"FLOAT","data":[1]}]}', None, "Unknown datatype 'FLOAT'"),
    (b'{"inputs":[{"name":"x","shape":[1],"datatype":"INT8","data":[300]}]}', None, "out of range"),
    (b'{"inputs":[{"name":"x","shape":[1],"datatype":"INT32","data":[1.5]}]}', None, "not of expected type"),
    (b'{"inputs":[{"name":"x","shape":[2],"datatype":"BOOL","data":[1,0]}]}', None, "not of expected type"),
    (b'{"inputs":[{"name":"x","shape":[-1],"datatype":"FP32","data":[]}]}', None, "negative dimension"),
    (b'{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","data":[[1],[2,3]]}]}', None, "ragged"),
    (b'{"inputs":[{"name":"x","shape":[1],"datatype":"FP32"}]}', None, "neither 'data' nor"),
    (b'{"inputs":[]}', None, "non-empty 'inputs'"),
    (b'{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}}]}' + b"\0" * 4,
     None, "JSON Parse error"),
    (_BINARY_2 + b"\0" * 4, str(len(_BINARY_2)), "reaches past"),
    (_BINARY_1 + b"\0" * 8, str(len(_BINARY_1)), "no input's binary_data_size claims"),
    (b'{"inputs":[]}', "abc", "whole number"),
    (b'{"inputs":[]}', "999", "the body has 13 bytes"),
])
def test_bad_requests_are_invalid_argument_with_the_fix(body: bytes, header: str | None, needle: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        v2.request_from_json(body, header, "m")
    assert needle in str(info.value)


def test_raw_size_and_bytes_framing_errors() -> None:
    with pytest.raises(InvalidArgumentError, match="needs 12 bytes"):
        v2.from_raw(b"\0" * 8, "FP32", [3])
    with pytest.raises(InvalidArgumentError, match="claims 9 bytes"):
        v2.from_raw(struct.pack("<I", 9) + b"ab", "BYTES", [1])
    with pytest.raises(InvalidArgumentError, match="after its 1 element"):
        v2.from_raw(struct.pack("<I", 1) + b"ab", "BYTES", [1])
    message = pb.ModelInferRequest(model_name="m")
    message.inputs.add(name="x", datatype="FP32", shape=[2]).contents.fp32_contents.extend([1.0])
    with pytest.raises(InvalidArgumentError, match="contents.fp32_contents has 1"):
        v2.request_from_proto(message.SerializeToString())
    message.raw_input_contents.extend([b"", b""])
    with pytest.raises(InvalidArgumentError, match="2 entries for 1 inputs"):
        v2.request_from_proto(message.SerializeToString())


def test_types_the_protocol_cannot_carry_are_named() -> None:
    assert v2.datatype_for_tf("DT_FLOAT") == "FP32" and v2.datatype_for_tf("DT_STRING") == "BYTES"
    with pytest.raises(UnimplementedError, match="DT_COMPLEX64"):
        v2.datatype_for_tf("DT_COMPLEX64")
    with pytest.raises(InvalidArgumentError, match="complex"):
        v2.datatype_of(np.zeros(1, np.complex64))
