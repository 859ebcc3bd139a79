"""Predict's request deserializer: the same request as the generated parser, inputs not copied."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from google.protobuf.message import DecodeError
from tensorflow_serving.apis import predict_pb2
from tfship.serving.grpc.predict_request import (
    MalformedRequest,
    WirePredictRequest,
    predict_inputs,
    read_predict_request,
)

from tfship.errors import InvalidArgumentError
from tfship.wire.tensor import to_tensor_proto


def _request(**inputs: Any) -> Any:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "mnist"
    request.model_spec.signature_name = "serving_default"
    request.model_spec.version_label = "stable"
    for alias, value in inputs.items():
        to_tensor_proto(value, request.inputs[alias])
    return request


# requests this large are read from the wire; smaller ones go through the generated parser
PAD = np.zeros(1 << 14, np.float32)


def _assert_same_as_generated_parser(data: bytes) -> WirePredictRequest:
    wire = read_predict_request(data)
    parsed = predict_pb2.PredictRequest.FromString(data)
    assert isinstance(wire, WirePredictRequest)
    assert wire.model_spec == parsed.model_spec
    assert wire.HasField("model_spec") == parsed.HasField("model_spec")
    assert list(wire.output_filter) == list(parsed.output_filter)
    ours, theirs = predict_inputs(wire), predict_inputs(parsed)
    assert ours.keys() == theirs.keys()
    for alias in theirs:
        assert ours[alias].dtype == theirs[alias].dtype
        np.testing.assert_array_equal(ours[alias], theirs[alias])
    return wire


def test_a_large_input_is_a_read_only_view_of_the_request_bytes_not_a_copy() -> None:
    images = np.random.default_rng(0).random((64, 28, 28, 1), dtype=np.float32)
    data = _request(images=images).SerializeToString()
    (x,) = predict_inputs(_assert_same_as_generated_parser(data)).values()
    assert not x.flags.writeable
    assert np.shares_memory(x, np.frombuffer(data, np.uint8))
    np.testing.assert_array_equal(x, images)


@pytest.mark.parametrize(
    "value",
    [
        np.arange(12, dtype=np.float64).reshape(3, 4),
        np.array([[1, -2], [3, 2**40]], np.int64),
        np.array([True, False]),
        np.array([b"a", b"\xff\x00", b""], object),
        np.float32(2.5),
    ],
    ids=["float64", "int64", "bool", "bytes", "scalar"],
)
def test_every_dtype_decodes_as_the_generated_parser_does(value: np.ndarray) -> None:
    _assert_same_as_generated_parser(_request(x=value, pad=PAD).SerializeToString())


def test_typed_float_val_output_filter_and_no_model_spec() -> None:
    request = predict_pb2.PredictRequest()
    request.inputs["x"].dtype = 1  # DT_FLOAT
    request.inputs["x"].tensor_shape.dim.add().size = 3
    request.inputs["x"].float_val.extend([1.5, 2.5, 3.5])
    request.output_filter.extend(["y", "z"])
    to_tensor_proto(PAD, request.inputs["pad"])
    wire = _assert_same_as_generated_parser(request.SerializeToString())
    assert not wire.HasField("model_spec")


def test_repeated_keys_and_fields_follow_protobuf_merge_rules() -> None:
    first = _request(x=np.zeros(2, np.float32), pad=PAD).SerializeToString()
    second = _request(x=np.ones(3, np.float32)).SerializeToString()
    wire = _assert_same_as_generated_parser(first + second)  # concatenation = merge; last key wins
    assert predict_inputs(wire)["x"].tolist() == [1.0, 1.0, 1.0]


def test_unknown_fields_are_skipped() -> None:
    data = _request(x=np.ones(2, np.float32), pad=PAD).SerializeToString() + b"\xa0\x06\x07"  # field 100, varint
    _assert_same_as_generated_parser(data)


def test_a_small_request_is_left_to_the_generated_parser() -> None:
    data = _request(x=np.ones(2, np.float32)).SerializeToString()
    assert isinstance(read_predict_request(data), type(predict_pb2.PredictRequest()))


def test_a_bad_tensor_fails_inside_the_call_not_in_the_deserializer() -> None:
    request = _request(pad=PAD)
    request.inputs["x"].dtype = 1
    request.inputs["x"].tensor_shape.dim.add().size = 4
    request.inputs["x"].tensor_content = b"\x00" * 3  # 3 bytes for 4 floats
    wire = read_predict_request(request.SerializeToString())
    with pytest.raises(Exception) as ours:
        predict_inputs(wire)
    with pytest.raises(Exception) as theirs:
        predict_inputs(request)  # the generated message: to_ndarray's fast path, then decode_tensor
    assert type(ours.value) is type(theirs.value) and str(ours.value) == str(theirs.value)
    assert str(ours.value).startswith("tensor parsing error: x. tensor_content holds 3 bytes")


@pytest.mark.parametrize("size", [1, 1 << 17])  # generated parser / wire view
def test_a_shape_claiming_more_than_was_sent_is_rejected_before_allocating(size: int) -> None:
    request = _request(pad=np.zeros(size, np.uint8))
    request.inputs["x"].dtype = 1
    request.inputs["x"].tensor_shape.dim.add().size = 2**40
    request.inputs["x"].float_val.append(1.0)
    with pytest.raises(InvalidArgumentError, match=r"tensor parsing error: x\. .*at most 1048576 elements"):
        predict_inputs(read_predict_request(request.SerializeToString()))
    del request.inputs["x"].tensor_shape.dim[:]
    for _ in range(300):
        request.inputs["x"].tensor_shape.dim.add().size = 1
    with pytest.raises(InvalidArgumentError, match="300 dimensions; at most 64"):
        predict_inputs(read_predict_request(request.SerializeToString()))


@pytest.mark.parametrize("data", [b"\x0a\x05abc", b"\x12\x02\x0a\xff", b"\x1a\x02\xff\xfe"],
                         ids=["truncated", "truncated-entry", "invalid-utf8-filter"])
def test_malformed_bytes_fail_like_the_generated_parser(data: bytes) -> None:
    data += b"\x22\x80\x80\x04" + bytes(1 << 16)  # + field 4 (unknown), 64 KiB: read from the wire
    with pytest.raises(DecodeError):
        predict_pb2.PredictRequest.FromString(data)
    # the servicer answers this INVALID_ARGUMENT (grpcio would say INTERNAL for an exception)
    bad = read_predict_request(data)
    assert isinstance(bad, MalformedRequest) and bad.message_type == "tensorflow.serving.PredictRequest"
    assert bad.error().code.name == "INVALID_ARGUMENT"
