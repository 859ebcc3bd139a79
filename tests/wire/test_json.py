"""numpy <-> TF Serving JSON: formatting and conversion rules of TF Serving compat spec §6.2."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import orjson
import pytest

from tfship.errors import InvalidArgumentError, UnimplementedError
from tfship.wire import dtypes, numeric_arrays
from tfship.wire.json import decode_value, dumps, encode_value, loads, nested_shape

FLOAT = dtypes.by_name("DT_FLOAT")
INT32 = dtypes.by_name("DT_INT32")
BOOL = dtypes.by_name("DT_BOOL")
STRING = dtypes.by_name("DT_STRING")


def test_floats_print_shortest_with_whole_numbers_as_point_zero() -> None:
    out = dumps({"predictions": encode_value(np.array([0.1, 3.0, 2.5], np.float32))})
    assert out == b'{"predictions":[0.1,3.0,2.5]}'


def test_non_finite_floats_use_tf_serving_tokens_and_parse_back() -> None:
    out = dumps({"outputs": encode_value(np.array([np.nan, np.inf, -np.inf, 0.1], np.float32))})
    assert out == b'{"outputs":[NaN,Infinity,-Infinity,0.1]}'
    back = decode_value(loads(out)["outputs"], FLOAT)
    assert np.isnan(back[0]) and back[1] == np.inf and back[2] == -np.inf


def test_bytes_outputs_as_b64_and_text_raw() -> None:
    arr = np.array([b"\x00\xff", b"abc"], object)
    assert dumps(encode_value(arr)) == b'[{"b64":"AP8="},"abc"]'
    assert dumps(encode_value(arr, b64=True)) == b'[{"b64":"AP8="},{"b64":"YWJj"}]'


def test_decode_strings_and_b64() -> None:
    out = decode_value([["a", {"b64": "AP8="}]], STRING)
    assert out.shape == (1, 2) and out[0, 1] == b"\x00\xff"


def test_bad_b64_names_the_problem() -> None:
    with pytest.raises(InvalidArgumentError, match="base64"):
        decode_value([{"b64": "not base64!"}], STRING)


def test_int_tensor_rejects_floats_with_tf_serving_wording() -> None:
    with pytest.raises(InvalidArgumentError, match="is not of expected type: int32"):
        decode_value([1, 2.5], INT32)


def test_float_tensor_accepts_ints_and_bool_requires_bools() -> None:
    assert decode_value([1, 2], FLOAT).dtype == np.float32
    with pytest.raises(InvalidArgumentError, match="is not of expected type: bool"):
        decode_value([1, 0], BOOL)


def test_ragged_lists_are_rejected() -> None:
    with pytest.raises(InvalidArgumentError, match="ragged"):
        decode_value([[1.0, 2.0], [3.0]], FLOAT)


def test_half_over_json_is_unimplemented_like_tf_serving() -> None:
    with pytest.raises(UnimplementedError, match="Conversion of JSON Value"):
        decode_value([1.0], dtypes.by_name("DT_HALF"))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "JSON Parse error: The document is empty"),
        (b"{", "JSON Parse error: Missing a name for object member. at offset: 1"),
        (b"[1,", "JSON Parse error: Invalid value. at offset: 3"),
        (b'{"a": 1} x', "JSON Parse error: The document root must not be followed by other values."),
        (b'{"a" 1}', "JSON Parse error: Missing a colon after a name of object member."),
        (b'{"a": 1 "b": 2}', "JSON Parse error: Missing a comma or '}' after an object member."),
    ],
)
def test_parse_errors_use_rapidjson_reasons(body: bytes, message: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        loads(body)
    assert str(info.value).startswith(message)


def test_uint64_values_above_int64_parse_exactly() -> None:
    out = decode_value([0, 2**64 - 1], dtypes.by_name("DT_UINT64"))
    assert out.dtype == np.uint64 and int(out[1]) == 2**64 - 1
    with pytest.raises(InvalidArgumentError, match="out of range for uint64"):
        decode_value([-1, 2**64 - 1], dtypes.by_name("DT_UINT64"))


def _big(array: np.ndarray) -> bytes:
    return dumps({"signature_name": "", "instances": encode_value(array)})


@pytest.mark.parametrize("shape", [(4096, 4), (256, 8, 8, 1), (20000,), (2, 3, 4, 5, 600)])
def test_large_numeric_arrays_parse_to_the_same_values_as_the_slow_path(shape: tuple[int, ...]) -> None:
    array = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    body = _big(array)
    fast = loads(body, numeric_arrays=True)["instances"]
    slow = loads(body)["instances"]
    assert isinstance(fast, np.ndarray) and fast.shape == shape
    np.testing.assert_array_equal(decode_value(fast, FLOAT), decode_value(slow, FLOAT))


@pytest.mark.parametrize(
    "mangle",
    [
        lambda b: b.replace(b"],[", b",", 1),  # ragged: two rows merged
        lambda b: b.replace(b",", b",,", 1),  # malformed number list
        lambda b: b.replace(b"0.", b"0.0.", 1),  # malformed number
    ],
    ids=["ragged", "double-comma", "bad-number"],
)
def test_irregular_or_malformed_large_arrays_keep_tf_serving_errors(mangle: Any) -> None:
    body = mangle(_big(np.random.default_rng(2).random((4096, 4)).astype(np.float32)))
    with pytest.raises(InvalidArgumentError) as slow:
        decode_value(loads(body)["instances"], FLOAT)
    with pytest.raises(InvalidArgumentError) as fast:
        decode_value(loads(body, numeric_arrays=True)["instances"], FLOAT)
    assert str(fast.value) == str(slow.value)


def test_large_integer_arrays_stay_exact_on_the_slow_path() -> None:
    body = _big(np.arange(30000, dtype=np.int64) + 2**60)
    out = loads(body, numeric_arrays=True)["instances"]
    assert isinstance(out, list) and out[-1] == 2**60 + 29999


def test_numbers_inside_a_large_string_are_not_touched() -> None:
    text = "[" + ",".join(["1.5"] * 30000) + "]"
    body = dumps({"instances": [text]})
    assert loads(body, numeric_arrays=True) == {"instances": [text]}


# --------------------------------------------------------------------------- numeric fast path
# loads(numeric_arrays=True) must give exactly what loads() gives, with regular float arrays as
# float64 ndarrays: same values bit for bit, same errors, same downstream conversions.


def _nest(tokens: list[bytes], shape: tuple[int, ...], sep: bytes = b",") -> bytes:
    """JSON text of ``tokens`` (number texts) nested as a regular array of ``shape``."""
    rows = tokens
    for dim in reversed(shape):
        rows = [b"[" + sep.join(rows[i : i + dim]) + b"]" for i in range(0, len(rows), dim)]
    assert len(rows) == 1
    return rows[0]


def _assert_same(fast: Any, slow: Any) -> None:
    """``fast`` equals ``slow`` with its ndarrays standing for float64 conversions of the lists."""
    if isinstance(fast, np.ndarray):
        expected = np.asarray(slow, dtype=np.float64)
        assert fast.dtype == np.float64 and fast.shape == expected.shape
        assert np.array_equal(fast.view(np.uint64), expected.view(np.uint64))  # -0.0, last bits
    elif isinstance(fast, dict):
        assert isinstance(slow, dict) and list(fast) == list(slow)
        for key in fast:
            _assert_same(fast[key], slow[key])
    elif isinstance(fast, list):
        assert isinstance(slow, list) and len(fast) == len(slow)
        for a, b in zip(fast, slow, strict=True):
            _assert_same(a, b)
    else:
        assert type(fast) is type(slow) and fast == slow


def _has_ndarray(value: Any) -> bool:
    if isinstance(value, np.ndarray):
        return True
    if isinstance(value, dict):
        return any(_has_ndarray(v) for v in value.values())
    return isinstance(value, list) and any(_has_ndarray(v) for v in value)


def _fast_and_slow(body: bytes, *, fast_path: bool) -> tuple[Any, Any]:
    fast, slow = loads(body, numeric_arrays=True), loads(body)
    _assert_same(fast, slow)
    assert _has_ndarray(fast) == fast_path
    return fast, slow


def _tokens(kind: str, n: int) -> list[bytes]:
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2**64, n * 2, dtype=np.uint64).view(np.float64)
    f64 = bits[np.isfinite(bits)][:n]
    if kind == "float32":
        text = orjson.dumps(rng.standard_normal(n).astype(np.float32), option=orjson.OPT_SERIALIZE_NUMPY)
        return text[1:-1].split(b",")
    if kind == "float64 repr":
        return [repr(float(x)).encode() for x in f64]
    if kind == "17 digits":
        return [b"%.17g" % x if b"." in b"%.17g" % x else b"%.17e" % x for x in f64]
    if kind == "30 digits":
        return [b"%.30e" % x for x in f64]
    special = [b"0.5", b"5e-324", b"4.9406564584124654e-324", b"2.2250738585072011e-308", b"1e-300", b"-0.0",
               b"1E+5", b"1e5", b"2.5E-3", b"-1.5e-7", b"1.7976931348623157e308", b"9007199254740993.0",
               b"0.1000000000000000055511151231257827021181583404541015625", b"7", b"-0", b"9007199254740993",
               b"18446744073709551615", b"-9223372036854775808",
               b"1.00000000000000011102230246251565404236316680908203125"]
    # Integers only after the first 4 KB (an array opening with integers stays on the slow path).
    head = [b"0.25"] * 1000
    return (head + special * n)[:n]


@pytest.mark.parametrize("kind", ["float32", "float64 repr", "17 digits", "30 digits", "special"])
@pytest.mark.parametrize("shape", [(256, 64), (16, 8, 4, 32), (2048, 4, 1), (8, 4096)])
def test_numeric_fast_path_values_are_bit_identical_to_the_slow_path(kind: str, shape: tuple[int, ...]) -> None:
    # (256, 64): few lists, checked list by list; (2048, 4, 1): many, checked on the text.
    text = _nest(_tokens(kind, int(np.prod(shape))), shape, b", " if kind == "30 digits" else b",")
    _fast_and_slow(b'{"signature_name": "", "instances": ' + text + b"}", fast_path=True)


def _ragged_bodies() -> dict[str, bytes]:
    row = [b"1.5", b"2.5", b"3.5", b"4.5", b"5.5", b"6.5"]
    lengths = [2, 3, 1] * 4000  # 2 values per row on average, like the first row
    rows = [b"[" + b",".join(row[:n]) + b"]" for n in lengths]
    deep = [b"[" + b",".join([b"[0.5]"] * n) + b"]" for n in lengths]  # (12000, 2, 1) by its first row
    inner = [b"[" + b",".join([b"0.75"] * n) + b"]" for n in [200, 300, 100] * 40]
    long_rows = [b",".join([b"0.125"] * 200)] * 100  # few lists: checked one by one
    unit = _nest([b"0.125"] * 20000, (20000, 1))  # many lists: checked on the text
    wide = (200, 200)

    def rows_with(second: bytes) -> bytes:
        return b"[" + b",".join(b"[" + r + b"]" for r in [long_rows[0], second, *long_rows[2:]]) + b"]"

    return {
        "rows 2,3,1 (lists checked one by one)": b"[" + b",".join(rows) + b"]",
        "rows 2,3,1 (checked on the text)": b"[" + b",".join(deep) + b"]",
        "innermost 200,300,100": b"[[" + b",".join(inner) + b"]]",
        "empty list beside a longer one": rows_with(b"[],[0.125,0.125]," + b",".join([b"0.125"] * 198)),
        "number where a list should be": rows_with(b"[0.125]," + b",".join([b"0.125"] * 199)),
        "empty innermost list": unit.replace(b"[0.125]", b"[]", 1),
        "deeper list": unit.replace(b"[0.125]", b"[[0.125]]", 1),
        "integers first": _nest([b"0"] + [b"0.5"] * 39999, wide),
        "integer in the first 4 KB": _nest([b"0.5"] * 100 + [b"3"] + [b"0.5"] * 39899, wide),
        "integers only": _nest([b"3"] * 40000, wide),
        "strings": _nest([b"0.5"] * 39999 + [b'"0.5"'], wide),
        "bool": _nest([b"0.5"] * 39999 + [b"true"], wide),
        "null": _nest([b"0.5"] * 39999 + [b"null"], wide),
        "object": _nest([b"0.5"] * 39999 + [b'{"a": 0.5}'], wide),
        "b64": _nest([b"0.5"] * 39999 + [b'{"b64": "AAAA"}'], wide),
        "integer beyond 64 bits": _nest([b"0.5"] * 39999 + [b"18446744073709551616"], wide),
        "1e400": _nest([b"0.5"] * 39999 + [b"1e400"], wide),
    }


@pytest.mark.parametrize("name", list(_ragged_bodies()))
@pytest.mark.parametrize("dtype", ["DT_FLOAT", "DT_INT32", "DT_BOOL", "DT_STRING"])
def test_irregular_arrays_keep_the_slow_path_results_and_errors(name: str, dtype: str) -> None:
    body = b'{"instances": ' + _ragged_bodies()[name] + b"}"
    assert len(body) > numeric_arrays.MIN_BYTES + 64  # large enough for the fast path
    try:
        fast, slow = _fast_and_slow(body, fast_path=False)
    except InvalidArgumentError as exc:  # 1e400: JSON errors, the same either way
        with pytest.raises(InvalidArgumentError) as slow_error:
            loads(body)
        assert str(exc) == str(slow_error.value)
        return
    _assert_same_decoding(fast["instances"], slow["instances"], dtypes.by_name(dtype))


def _assert_same_decoding(fast: Any, slow: Any, dtype: dtypes.DType) -> None:
    try:
        expected = decode_value(slow, dtype)
    except InvalidArgumentError as exc:
        with pytest.raises(InvalidArgumentError) as info:
            decode_value(fast, dtype)
        assert str(info.value) == str(exc)
    else:
        got = decode_value(fast, dtype)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        assert np.array_equal(got, expected, equal_nan=got.dtype.kind == "f")


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")  # 1.797e308 as float32, both ways
@pytest.mark.parametrize("dtype", ["DT_FLOAT", "DT_DOUBLE", "DT_INT32", "DT_INT64", "DT_UINT64", "DT_BOOL",
                                   "DT_STRING"])
def test_fast_arrays_decode_and_echo_like_the_lists_they_replace(dtype: str) -> None:
    # Opens with decimals, integers further on: an ndarray, which every dtype converts (or
    # rejects, quoting the first value) exactly as it does the lists.
    body = b'{"instances": ' + _nest(_tokens("special", 40000), (200, 200)) + b', "signature_name": 5}'
    fast, slow = _fast_and_slow(body, fast_path=True)
    _assert_same_decoding(fast["instances"], slow["instances"], dtypes.by_name(dtype))
    # The REST server quotes a bad document's first 200 characters.
    assert dumps(fast)[:200] == dumps(slow)[:200]


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_finite_tokens_in_large_arrays_parse_like_tf_serving(token: bytes) -> None:
    body = b'{"instances": ' + _nest([b"0.5"] * 39999 + [token], (200, 200)) + b"}"
    fast, slow = loads(body, numeric_arrays=True), loads(body)
    np.testing.assert_array_equal(decode_value(fast["instances"], FLOAT), decode_value(slow["instances"], FLOAT))


@pytest.mark.parametrize(
    "mangle",
    [
        lambda b: b.replace(b"0.5,0.5", b"0.5,]0.5", 1),  # bracket on the wrong side of a number
        lambda b: b.replace(b"],[", b"],[,", 1),
        lambda b: b.replace(b"0.5]", b"0.5,]", 1),  # trailing comma
        lambda b: b.replace(b"0.5", b"0.5.", 1),
        lambda b: b.replace(b"0.5", b"0.", 1),
        lambda b: b.replace(b"0.5", b"05", 1),
        lambda b: b[:-2] + b"}",  # unclosed
        lambda b: b[:-1] + b"]}",  # extra bracket
        lambda b: b.replace(b'"instances": ', b'"instances" ', 1),
    ],
)
def test_malformed_large_arrays_give_the_slow_path_error(mangle: Any) -> None:
    body = mangle(b'{"instances": ' + _nest([b"0.5"] * 40000, (200, 200)) + b"}")
    with pytest.raises(InvalidArgumentError) as slow:
        loads(body)
    with pytest.raises(InvalidArgumentError) as fast:
        loads(body, numeric_arrays=True)
    assert str(fast.value) == str(slow.value) and str(fast.value).startswith("JSON Parse error: ")


def test_documents_around_large_arrays_parse_like_the_slow_path() -> None:
    a = _nest(_tokens("float32", 20000), (200, 100))
    b = _nest(_tokens("float64 repr", 20000), (50, 20, 20, 1))
    cases = {
        "columnar object": b'{"inputs": {"a": ' + a + b', "b": ' + b + b'}, "signature_name": "x"}',
        "columnar list": b'{"inputs": ' + b + b"}",
        "duplicate key": b'{"instances": ' + a + b', "instances": ' + b + b"}",
        "duplicate key, then a string": b'{"instances": ' + a + b', "instances": "x"}',
        "row objects": b'{"instances": [{"a": ' + a + b', "b": "s"}, {"a": ' + a + b', "b": "t"}]}',
        "one row object": b'{"instances": [{"a": ' + a + b"}]}",
        "escapes and brackets in strings": (
            b'{"signature_name": "q\\"\\\\:[1.5]", "k\\"": ["[", "]", 7], "instances": ' + a + b"}"
        ),
    }
    for name, body in cases.items():
        fast, _ = _fast_and_slow(body, fast_path=name != "duplicate key, then a string")
        assert name != "duplicate key" or fast["instances"].shape == (50, 20, 20, 1)
    # What the REST server does with row objects: same shapes, values and errors.
    fast, slow = _fast_and_slow(cases["row objects"], fast_path=True)
    rows_fast, rows_slow = [r["a"] for r in fast["instances"]], [r["a"] for r in slow["instances"]]
    assert nested_shape(rows_fast) == nested_shape(rows_slow) == (2, 200, 100)
    for dtype in ("DT_FLOAT", "DT_INT32", "DT_STRING"):
        _assert_same_decoding(rows_fast, rows_slow, dtypes.by_name(dtype))


def test_array_text_inside_a_string_stays_a_string() -> None:
    text = "x:" + _nest([b"0.5"] * 20000, (100, 200)).decode()
    body = dumps({"signature_name": text, "instances": [[1.5]]})
    assert loads(body, numeric_arrays=True) == {"signature_name": text, "instances": [[1.5]]}


def test_numeric_fast_path_is_thread_safe_and_results_outlive_the_parser() -> None:
    rng = np.random.default_rng(3)
    arrays = [rng.random(shape) for shape in [(300, 40), (40, 30, 10, 1), (12000,), (60, 200)]]
    bodies = [dumps({"instances": a}) for a in arrays]
    first = loads(bodies[0], numeric_arrays=True)["instances"]
    kept = first.copy()

    def parse(i: int) -> bool:
        out = loads(bodies[i % 4], numeric_arrays=True)["instances"]
        return bool(np.array_equal(out, arrays[i % 4]))

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(parse, range(64)))
    assert np.array_equal(first, kept) and np.array_equal(first, arrays[0])
    assert numeric_arrays._parser is not None  # one parser, reused


def test_parsers_grown_by_big_documents_are_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    body = _big(np.random.default_rng(5).random((300, 40)))
    monkeypatch.setattr(numeric_arrays, "_parser", None)
    monkeypatch.setattr(numeric_arrays, "_PARSER_MAX_BYTES", len(body) // 2)
    assert isinstance(loads(body, numeric_arrays=True)["instances"], np.ndarray)
    assert numeric_arrays._parser is None
    monkeypatch.setattr(numeric_arrays, "_PARSER_MAX_BYTES", len(body))
    assert isinstance(loads(body, numeric_arrays=True)["instances"], np.ndarray)
    assert numeric_arrays._parser is not None


def test_without_pysimdjson_large_arrays_take_the_slow_path(monkeypatch: pytest.MonkeyPatch) -> None:
    assert numeric_arrays._HAVE_SIMDJSON  # a base dependency: the tests above did exercise it
    monkeypatch.setattr(numeric_arrays, "_HAVE_SIMDJSON", False)
    _fast_and_slow(_big(np.random.default_rng(4).random((300, 40))), fast_path=False)


def test_small_image_batches_take_the_fast_path_small_flat_ones_do_not() -> None:
    rng = np.random.default_rng(11)
    image = rng.random((1, 28, 28, 1)).astype(np.float32)  # 10 KB, one list per pixel
    assert len(_big(image)) < numeric_arrays.MIN_BYTES
    fast, _ = _fast_and_slow(_big(image), fast_path=True)
    np.testing.assert_array_equal(decode_value(fast["instances"], FLOAT), image)
    _fast_and_slow(_big(rng.random((1, 784)).astype(np.float32)), fast_path=False)  # 8 KB, flat: orjson
    _fast_and_slow(_big(rng.random((1, 4, 4, 1)).astype(np.float32)), fast_path=False)  # under 4 KB


def test_small_ragged_image_batches_fail_as_on_the_slow_path() -> None:
    text = _nest([b"0.25"] * 784, (1, 28, 28, 1)).replace(b"[0.25],[0.25]]", b"[0.25,0.25]]", 1)
    body = b'{"instances": ' + text + b"}"
    assert numeric_arrays.NESTED_MIN_BYTES <= len(body) < numeric_arrays.MIN_BYTES
    fast, slow = _fast_and_slow(body, fast_path=False)
    with pytest.raises(InvalidArgumentError) as fast_error:
        decode_value(fast["instances"], FLOAT)
    with pytest.raises(InvalidArgumentError) as slow_error:
        decode_value(slow["instances"], FLOAT)
    assert str(fast_error.value) == str(slow_error.value)


# ----------------------------------------------------------------------------- hostile input


@pytest.mark.parametrize("body", [
    b"[" * 100_000 + b"]" * 100_000,
    b"[" * 1_000_000,
    b'{"instances": ' + b"[" * 1100 + b"NaN" + b"]" * 1100 + b"}",  # the stdlib parser's path
], ids=["deep", "unclosed", "deep-with-nan"])
def test_nesting_deeper_than_the_limit_is_a_parse_error_not_a_recursion_error(body: bytes) -> None:
    with pytest.raises(InvalidArgumentError, match="nest deeper than 1024 levels at offset: 10"):
        loads(body)


def test_documents_up_to_the_depth_limit_parse_on_both_paths() -> None:
    deep = b"[" * 1023 + b"%s" + b"]" * 1023
    for value in (b"1", b"NaN"):  # orjson / stdlib parser (NaN), in a thread: less stack
        with ThreadPoolExecutor(1) as pool:
            doc = pool.submit(loads, b'{"a": ' + deep % value + b"}").result()
        assert nested_shape(doc["a"]) == (1,) * 1023


@pytest.mark.parametrize("body,offset", [
    (b'{"instances": [[1e400]]}', 16),
    (b'{"instances": [[-1e400]]}', 16),
    (b'{"instances": [[NaN, 1e400]]}', 21),  # the stdlib parser's path
    (b'{"inputs": {"x": [1' + b"0" * 400 + b"]}}", 18),  # an integer beyond double range
    (b'{"examples": [{"x": NaN, "y": 1' + b"0" * 5000 + b"}]}", 30),  # beyond int() digit limit
])
def test_numbers_beyond_double_range_are_rejected_like_tf_serving(body: bytes, offset: int) -> None:
    with pytest.raises(InvalidArgumentError) as err:
        loads(body)
    assert f"JSON Parse error: Number too big to be stored in double. at offset: {offset}" in err.value.message


def test_large_integers_parse_as_orjson_reads_them_on_both_paths() -> None:
    text = b'[18446744073709551615, 18446744073709551616, -9223372036854775809, 1.5e-400%s]'
    assert loads(text % b"") == loads(text % b", NaN")[:4] == [
        2**64 - 1, 1.8446744073709552e19, -9.223372036854776e18, 0.0]


@pytest.mark.parametrize("body", [b'{"s": "\\ud800"}', b'{"n": NaN, "s": "x\\udc00"}'])
def test_lone_surrogate_escapes_are_rejected_on_both_paths(body: bytes) -> None:
    with pytest.raises(InvalidArgumentError, match="The surrogate pair in string is invalid"):
        loads(body)


def test_a_value_nested_deeper_than_max_rank_names_the_limit() -> None:
    value: Any = 1.0
    for _ in range(65):
        value = [value]
    for dtype in (FLOAT, STRING, None):
        with pytest.raises(InvalidArgumentError, match="65 levels deep, but a tensor has at most 64"):
            decode_value(value, dtype)
