"""numpy <-> TensorProto round trips, checked against TensorFlow's own converters."""

from __future__ import annotations

import re
from typing import Any

import ml_dtypes
import numpy as np
import pytest

from tfship.errors import InvalidArgumentError
from tfship.wire.tensor import decode_tensor, encode_tensor, to_ndarray, to_tensor_proto

tf = pytest.importorskip("tensorflow")
from tensorflow.core.framework.tensor_pb2 import TensorProto  # noqa: E402

rng = np.random.default_rng(0)

ARRAYS = {
    "float32": rng.standard_normal((3, 4)).astype(np.float32),
    "float64": rng.standard_normal(5),
    "int32": np.array([-1, 2**31 - 1, -(2**31), 0, 5], np.int32),
    "int64": np.array([-(2**63), 2**63 - 1, 0, -1], np.int64),
    "uint8": np.array([0, 255, 128], np.uint8),
    "int8": np.array([-128, 127, -1], np.int8),
    "int16": np.array([-32768, 5], np.int16),
    "uint16": np.array([65535, 1], np.uint16),
    "uint32": np.array([2**32 - 1, 0], np.uint32),
    "uint64": np.array([2**64 - 1, 0], np.uint64),
    "bool": np.array([True, False, True]),
    "float16": np.array([1.5, -2, np.inf], np.float16),
    "bfloat16": np.array([1.5, -2, 3], ml_dtypes.bfloat16),
    "complex64": np.array([1 + 2j, 3 - 4j], np.complex64),
    "complex128": np.array([1 + 2j], np.complex128),
    "bytes": np.array([[b"a", b"\x00\xff"], [b"", b"xyz"]], object),
    "scalar": np.float32(3.0),
    "empty": np.zeros((0, 3), np.float32),
}


@pytest.mark.parametrize("typed", [False, True], ids=["tensor_content", "typed_fields"])
@pytest.mark.parametrize("name", sorted(ARRAYS))
def test_round_trip_matches_tensorflow(name: str, typed: bool) -> None:
    array = np.asarray(ARRAYS[name])
    proto = to_tensor_proto(array, TensorProto(), typed=typed)
    ours = to_ndarray(proto)
    theirs = tf.make_ndarray(proto)
    assert ours.shape == array.shape
    assert ours.dtype == (object if array.dtype == object else array.dtype)
    np.testing.assert_array_equal(ours, array)
    np.testing.assert_array_equal(theirs.astype(ours.dtype) if ours.dtype != object else theirs, ours)


@pytest.mark.parametrize("name", sorted(n for n in ARRAYS if ARRAYS[n].dtype != object))
def test_decodes_what_tensorflow_encodes(name: str) -> None:
    array = np.asarray(ARRAYS[name])
    np.testing.assert_array_equal(to_ndarray(tf.make_tensor_proto(array)), array)


def test_typed_response_uses_packed_float_val_not_tensor_content() -> None:
    proto = to_tensor_proto(np.arange(4, dtype=np.float32), TensorProto(), typed=True)
    assert list(proto.float_val) == [0.0, 1.0, 2.0, 3.0]
    assert proto.tensor_content == b""


def test_str_arrays_are_sent_as_utf8_strings() -> None:
    proto = to_tensor_proto(np.array(["héllo", "w"]), TensorProto())
    assert list(proto.string_val) == ["héllo".encode(), b"w"]


def test_single_value_fills_the_shape_like_tensorflow() -> None:
    proto = TensorProto(dtype=1)
    proto.tensor_shape.dim.add(size=3)
    proto.float_val.append(7.0)
    np.testing.assert_array_equal(to_ndarray(proto), [7.0, 7.0, 7.0])


def test_decoded_arrays_are_writable() -> None:
    for typed in (False, True):
        out = to_ndarray(to_tensor_proto(np.ones(3, np.float32), TensorProto(), typed=typed))
        out[0] = 5.0
        assert out[0] == 5.0


def test_unpacked_elements_from_other_encoders_decode() -> None:
    # dtype=DT_INT32, shape [2], then two *unpacked* int_val entries (tag 7, varint).
    raw = b"\x08\x03" + b"\x12\x04\x12\x02\x08\x02" + b"\x38\x05" + b"\x38\x07"
    np.testing.assert_array_equal(decode_tensor(raw), [5, 7])


def test_content_size_mismatch_is_a_clear_invalid_argument() -> None:
    proto = TensorProto(dtype=1, tensor_content=b"\x00" * 7)
    proto.tensor_shape.dim.add(size=2)
    with pytest.raises(InvalidArgumentError, match="tensor_content holds 7 bytes"):
        to_ndarray(proto)


def test_too_many_values_is_rejected() -> None:
    proto = TensorProto(dtype=1)
    proto.tensor_shape.dim.add(size=1)
    proto.float_val.extend([1.0, 2.0])
    with pytest.raises(InvalidArgumentError, match="1 elements but 2 values"):
        to_ndarray(proto)


def test_unsupported_numpy_dtype_names_the_fix() -> None:
    with pytest.raises(InvalidArgumentError, match="cast the array"):
        encode_tensor(np.array(["2020-01-01"], dtype="datetime64[D]"))


# ----------------------------------------------------------------------------- hostile input


def _proto(dtype: int = 1, dims: tuple[int, ...] = (), **values: Any) -> Any:
    proto = TensorProto(dtype=dtype)
    for d in dims:
        proto.tensor_shape.dim.add().size = d
    for field, value in values.items():
        if field == "tensor_content":
            proto.tensor_content = value
        else:
            getattr(proto, field).extend(value)
    return proto


@pytest.mark.parametrize("proto,fragment", [
    (_proto(1, (2**40,), float_val=[1.0]), "has 1099511627776 elements but only 1 values were sent"),
    (_proto(7, (2**40,), string_val=[b"a"]), "at most 1048576 elements"),
    (_proto(1, (2**20 + 1,)), "only 0 values were sent"),  # no values: zeros of that size
    (_proto(1, (1,) * 300, float_val=[1.0]), "300 dimensions; at most 64"),
    (_proto(1, (1,) * 65, tensor_content=b"\0" * 4), "65 dimensions; at most 64"),  # fast path
    (_proto(1, (2**40, 2**40, 2**40), tensor_content=b"\0" * 4), "is too large"),
    (_proto(1, (0, 2**62, 2**62)), "is too large"),  # numpy's bound even with no elements
    (_proto(1, (-1,), float_val=[1.0]), "negative dimension"),
])
def test_impossible_shapes_are_rejected_before_any_allocation(proto: Any, fragment: str) -> None:
    with pytest.raises(InvalidArgumentError, match=re.escape(fragment)):
        to_ndarray(proto)
    with pytest.raises(InvalidArgumentError, match=re.escape(fragment)):
        decode_tensor(proto.SerializeToString())


def test_a_fill_up_to_the_limit_still_works_like_tensorflow() -> None:
    assert to_ndarray(_proto(1, (1 << 20,), float_val=[2.0])).sum() == 2.0 * (1 << 20)


@pytest.mark.parametrize("data,fragment", [
    (b"\x08\x01\x2a\x03abc", "packed float_val of 3 bytes"),
    (b"\x0a\x01\x01", "dtype is not an enum value"),
    (b"\x08\x01\x28\x05", "float_val has wire type 0"),
    (b"\x12\x02\x10\x01", "tensor_shape.dim is not a message"),
    (b"\x12\x04\x12\x02\x0a\x00", "tensor_shape.dim.size is not an integer"),
    (b"\x08\x12\x62\x04\0\0\0\0", "packed dcomplex_val of 4 bytes"),
    (b"\x08\x01\x22\x05", "truncated"),
])
def test_malformed_tensor_bytes_are_invalid_argument(data: bytes, fragment: str) -> None:
    with pytest.raises(InvalidArgumentError, match=fragment):
        decode_tensor(data)
