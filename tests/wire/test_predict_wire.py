"""PredictRequest/PredictResponse framing: one codec, the client writes with it, the server splits with it."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from tfship.errors import InvalidArgumentError
from tfship.wire.fields import len_field, varint
from tfship.wire.predict import decode_predict_response, encode_predict_request, split_predict_request
from tfship.wire.protos import serving_wire_pb2 as pb
from tfship.wire.tensor import decode_tensor, to_tensor_proto

ROOT = Path(__file__).resolve().parents[2]


def _spec(**fields: object) -> bytes:
    return pb.ModelSpec(**fields).SerializeToString()  # type: ignore[arg-type]


def test_what_the_client_writes_the_server_splits_back() -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    s = np.array([b"a", b"\xff"], dtype=object)
    data = encode_predict_request(_spec(name="m", signature_name="sig"), {"x": x, "s": s}, ["y", "z"])
    parts = split_predict_request(data)
    assert parts.output_filter == ["y", "z"]
    assert b"".join(bytes(p) for p in parts.model_spec) == _spec(name="m", signature_name="sig")
    np.testing.assert_array_equal(decode_tensor(parts.inputs["x"]), x)
    assert list(decode_tensor(parts.inputs["s"])) == [b"a", b"\xff"]
    # the inputs are views into the request bytes, not copies
    assert parts.inputs["x"].obj is data


def test_written_bytes_are_a_valid_predict_request() -> None:
    x = np.ones((2, 2), np.int64)
    request = pb.PredictRequest.FromString(encode_predict_request(_spec(name="m"), {"x": x}, ["y"]))
    assert request.model_spec.name == "m" and list(request.output_filter) == ["y"]
    assert list(request.inputs["x"].tensor_shape.dim) == [pb.TensorShapeProto.Dim(size=2)] * 2


def test_fields_seen_twice_split_as_the_generated_parser_merges_them() -> None:
    first = pb.PredictRequest(model_spec=pb.ModelSpec(name="m"))
    to_tensor_proto(np.zeros(2, np.float32), first.inputs["x"])
    second = pb.PredictRequest(model_spec=pb.ModelSpec(signature_name="sig"))
    to_tensor_proto(np.ones(2, np.float32), second.inputs["x"])
    data = first.SerializeToString() + second.SerializeToString()
    parts = split_predict_request(data)
    spec = pb.ModelSpec()
    for piece in parts.model_spec:
        spec.MergeFromString(bytes(piece))
    merged = pb.PredictRequest.FromString(data)
    assert spec == merged.model_spec
    np.testing.assert_array_equal(decode_tensor(parts.inputs["x"]), np.ones(2, np.float32))


def test_unknown_fields_are_skipped_and_wrong_wire_types_refused() -> None:
    unknown = varint(9 << 3) + varint(5)  # field 9, varint
    parts = split_predict_request(len_field(1, _spec(name="m")) + unknown)
    assert not parts.inputs
    with pytest.raises(ValueError, match="not length-delimited"):
        split_predict_request(varint(3 << 3) + varint(1))  # output_filter as a varint
    with pytest.raises(UnicodeDecodeError):
        split_predict_request(len_field(3, b"\xff"))
    with pytest.raises(InvalidArgumentError, match="Malformed protobuf"):
        split_predict_request(len_field(2, b"abc")[:-1])


def test_response_outputs_and_version() -> None:
    response = pb.PredictResponse(model_spec=pb.ModelSpec(name="m"))
    response.model_spec.version.value = 4
    to_tensor_proto(np.arange(3, dtype=np.float64), response.outputs["y"], typed=True)
    outputs, version = decode_predict_response(response.SerializeToString())
    assert version == 4
    np.testing.assert_array_equal(outputs["y"], np.arange(3, dtype=np.float64))
    assert decode_predict_response(pb.PredictResponse().SerializeToString()) == ({}, None)


def test_no_layer_reaches_for_private_wire_names() -> None:
    private = re.compile(r"from tfship\.wire\.\w+ import [^\n]*\b_\w+|tfship\.wire\.\w+\._\w+")
    offenders = [str(p.relative_to(ROOT)) for folder in ("client", "serving", "deploy", "export", "cli", "bench")
                 for p in (ROOT / folder).rglob("*.py") if private.search(p.read_text())]
    assert not offenders, f"import public names from tfship.wire instead: {offenders}"
