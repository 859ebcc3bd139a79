"""Property tests: generated malformed input never gets a server-fault answer.

Hypothesis throws REST bodies (structured JSON, token soup, deep nesting, byte-level mutations of
the hostile seeds, gzip or not) and PredictRequest / ClassificationRequest / RegressionRequest
bytes (random TensorProtos, dtypes, shapes, examples, mutations) at one running server. Each answer
must be a 2xx/4xx with a JSON error (REST) or a status other than UNKNOWN/INTERNAL/DATA_LOSS/
UNAVAILABLE (gRPC), and the server must answer a good request afterwards.

Bounded for CI (about 40 s of requests in all on 2 shared cores, plus the server's start):
400 REST and 2 x 800 gRPC examples, times ``TFSHIP_FUZZ_SCALE``; the run is derandomized (the
same inputs every run) unless ``TFSHIP_FUZZ_RANDOM=1``, which explores new ones. Any input that ever failed is added to
hostile_cases.py, where it stays a regular test.
"""

from __future__ import annotations

import gzip
import json
import os
from typing import Any

import grpc
import httpx
import pytest
from hostile_cases import (
    GRPC_CASES,
    REST_CASES,
    SERVER_FAULT_CODES,
    assert_still_serving,
    classify_request,
    good_predict_request,
)
from model_server_process import ServerProcess

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from tensorflow.core.example import feature_pb2  # noqa: E402
from tensorflow.core.framework import tensor_pb2  # noqa: E402
from tensorflow_serving.apis import classification_pb2, predict_pb2, regression_pb2  # noqa: E402

SCALE = float(os.environ.get("TFSHIP_FUZZ_SCALE", "1"))
FUZZ = settings(
    deadline=None,
    derandomize=not os.environ.get("TFSHIP_FUZZ_RANDOM"),
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)

MODELS = ["default", "two", "tf2", "missing", ""]
SIGNATURES = ["", "serving_default", "regress_x_to_y", "classify_x_to_y", "regress_x2_to_y3",
              "classify_x2_to_y3", "tensorflow/serving/regress", "nope"]
KEYS = ["instances", "inputs", "examples", "context", "signature_name", "x", "y", "inputs", "b64"]
REST_PATHS = [
    "/v1/models/default:predict", "/v1/models/tf2:predict", "/v1/models/two:predict",
    "/v1/models/two:regress", "/v1/models/two:classify", "/v1/models/default:regress",
    "/v1/models/default/versions/123:predict", "/v1/models/two/labels/x:predict",
    "/v1/models/missing:predict",
]


# ----------------------------------------------------------------------------- byte mutations


@st.composite
def mutated(draw: Any, seeds: list[bytes]) -> bytes:
    """A seed with a few bytes flipped, inserted or deleted, or cut short."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for op, where, blob in draw(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1 << 30),
                                                    st.binary(min_size=1, max_size=4)), max_size=4)):
        at = where % (len(data) + 1)
        if op == 0:
            data[at:at] = blob
        elif op == 1:
            del data[at:at + len(blob)]
        elif op == 2 and data:
            data[at % len(data)] ^= blob[0] or 1
        else:
            del data[at:]
    return bytes(data)


# ----------------------------------------------------------------------------- REST bodies

_LEAF = st.one_of(
    st.none(), st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.builds(lambda s: {"b64": s}, st.one_of(st.text(max_size=8), st.sampled_from(["AP8=", "AAAA"]))),
)
_VALUE = st.recursive(
    _LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=3),
    max_leaves=24,
)
_TOKENS = [b"[", b"]", b"{", b"}", b",", b":", b'"x"', b'"instances"', b'"inputs"', b'"examples"',
           b'"b64"', b"1e400", b"-1e400", b"NaN", b"-Infinity", b"1", b"2.5", b"-0", b'"\\ud800"',
           b'"\\udc00"', b"true", b"null", b" ", b"\\", b'"', b"18446744073709551616", b"1" + b"0" * 30,
           b"\xff", b"\x00", b'"AP8="']


def _dump(doc: Any) -> bytes:
    return json.dumps(doc, allow_nan=True).encode()  # NaN/Infinity tokens, like TF Serving clients


_BODIES = st.one_of(
    # documents shaped like requests, with random values
    st.dictionaries(st.sampled_from(KEYS), _VALUE, max_size=4).map(_dump),
    st.fixed_dictionaries({"instances": _VALUE}).map(_dump),
    st.fixed_dictionaries({"examples": st.lists(st.dictionaries(st.sampled_from(["x", "y"]), _VALUE,
                                                                max_size=2), max_size=3),
                           "signature_name": st.sampled_from(SIGNATURES)}).map(_dump),
    # token soup, bare or as the value of "instances"
    st.tuples(st.sampled_from([b"", b'{"instances": ', b'{"inputs": {"x": ']),
              st.lists(st.sampled_from(_TOKENS), max_size=40).map(b"".join)).map(b"".join),
    # deep nesting, closed or not, with a NaN (the stdlib parser's path) or not
    st.tuples(st.integers(60, 3000), st.sampled_from([b"1.5", b"NaN", b'"s"']), st.booleans()).map(
        lambda t: b'{"instances": ' + b"[" * t[0] + t[1] + (b"]" * t[0] + b"}" if t[2] else b"")),
    # the hostile seeds, mutated
    mutated([c.body for c in REST_CASES if len(c.body) < 20_000]),  # deep ones come from above
    st.binary(max_size=64),
)


@settings(FUZZ, max_examples=int(400 * SCALE))
@given(path=st.sampled_from(REST_PATHS), body=_BODIES, gzipped=st.integers(0, 9))
def test_rest_never_answers_a_server_fault(shared_models_server: ServerProcess, path: str, body: bytes,
                                           gzipped: int) -> None:
    headers = {}
    if gzipped == 0:  # one in ten bodies travels gzipped
        body, headers = gzip.compress(body), {"Content-Encoding": "gzip"}
    r = _rest(shared_models_server).post(path, content=body, headers=headers)
    assert r.status_code < 500, (r.status_code, r.text[:300], body[:300])
    assert r.headers["content-type"] == "application/json"
    if r.status_code != 200:
        assert r.json()["error"], body[:300]


_clients: dict[str, httpx.Client] = {}


def _rest(server: ServerProcess) -> httpx.Client:
    if server.rest_url not in _clients:
        _clients[server.rest_url] = httpx.Client(base_url=server.rest_url, timeout=60)
    return _clients[server.rest_url]


# ----------------------------------------------------------------------------- gRPC requests

_DTYPES = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14, 17, 18, 19, 22, 23, 101, 107, 150, 999]
_DIMS = st.one_of(st.integers(-2, 4), st.sampled_from([2**20 + 1, 2**31, 2**40, 2**62, 2**63 - 1]))


@st.composite
def tensor_protos(draw: Any) -> Any:
    t = tensor_pb2.TensorProto()
    t.dtype = draw(st.sampled_from(_DTYPES))
    for size in draw(st.lists(_DIMS, max_size=draw(st.sampled_from([3, 6, 70, 300])))):
        t.tensor_shape.dim.add().size = size
    if draw(st.integers(0, 9)) == 0:
        t.tensor_shape.unknown_rank = True
    field = draw(st.sampled_from(["float_val", "double_val", "int_val", "int64_val", "string_val",
                                  "bool_val", "half_val", "uint32_val", "uint64_val", "scomplex_val",
                                  "dcomplex_val", "tensor_content", "none"]))
    floats = st.floats(allow_nan=True, allow_infinity=True, width=32)
    values = {
        "float_val": st.lists(floats, max_size=8), "double_val": st.lists(floats, max_size=8),
        "scomplex_val": st.lists(floats, max_size=8), "dcomplex_val": st.lists(floats, max_size=8),
        "int_val": st.lists(st.integers(-(2**31), 2**31 - 1), max_size=8),
        "half_val": st.lists(st.integers(-(2**31), 2**31 - 1), max_size=8),
        "int64_val": st.lists(st.integers(-(2**63), 2**63 - 1), max_size=8),
        "uint32_val": st.lists(st.integers(0, 2**32 - 1), max_size=8),
        "uint64_val": st.lists(st.integers(0, 2**64 - 1), max_size=8),
        "bool_val": st.lists(st.booleans(), max_size=8),
        "string_val": st.lists(st.binary(max_size=8), max_size=8),
    }
    if field == "tensor_content":
        t.tensor_content = draw(st.binary(max_size=64))
    elif field != "none":
        getattr(t, field).extend(draw(values[field]))
    return t


@st.composite
def predict_bytes(draw: Any) -> bytes:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = draw(st.sampled_from(MODELS))
    request.model_spec.signature_name = draw(st.sampled_from(SIGNATURES))
    if draw(st.booleans()):
        request.model_spec.version.value = draw(st.sampled_from([0, 1, 123, -5, 2**63 - 1]))
    for alias in draw(st.lists(st.sampled_from(["x", "inputs", "y", ""]), min_size=1, max_size=2,
                               unique=True)):
        request.inputs[alias].CopyFrom(draw(tensor_protos()))
    request.output_filter.extend(draw(st.lists(st.sampled_from(["y", "outputs", "z"]), max_size=2)))
    if draw(st.integers(0, 3)) == 0:  # past 64 KiB the server reads tensors from the wire bytes
        request.inputs["pad"].dtype = 1
        request.inputs["pad"].tensor_shape.dim.add().size = 1 << 15
        request.inputs["pad"].tensor_content = bytes(4 << 15)
    return request.SerializeToString()


def _feature(draw: Any) -> Any:
    feature = feature_pb2.Feature()
    kind = draw(st.sampled_from(["float", "int64", "bytes", "none"]))
    if kind == "float":
        feature.float_list.value.extend(draw(st.lists(st.floats(width=32), max_size=3)))
    elif kind == "int64":
        feature.int64_list.value.extend(draw(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=3)))
    elif kind == "bytes":
        feature.bytes_list.value.extend(draw(st.lists(st.binary(max_size=6), max_size=3)))
    return feature


@st.composite
def examples_bytes(draw: Any) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["Classify", "Regress"]))
    request = (classification_pb2.ClassificationRequest() if kind == "Classify"
               else regression_pb2.RegressionRequest())
    request.model_spec.name = draw(st.sampled_from(MODELS))
    request.model_spec.signature_name = draw(st.sampled_from(SIGNATURES))
    listed = (request.input.example_list if draw(st.booleans())
              else request.input.example_list_with_context)
    for _ in range(draw(st.integers(0, 3))):
        example = listed.examples.add()
        for name in draw(st.lists(st.sampled_from(["x", "y", "x2", ""]), max_size=2, unique=True)):
            example.features.feature[name].CopyFrom(_feature(draw))
    if listed is request.input.example_list_with_context and draw(st.booleans()):
        listed.context.features.feature["x"].CopyFrom(_feature(draw))
    return kind, request.SerializeToString()


_PREDICT_SEEDS = [c.data for c in GRPC_CASES if c.method.endswith("/Predict") and len(c.data) < 20_000] + [
    good_predict_request().SerializeToString()]
_CLASSIFY_SEEDS = [c.data for c in GRPC_CASES if c.method.endswith("/Classify")] + [classify_request()]


def _call(server: ServerProcess, method: str, data: bytes) -> None:
    try:
        server.channel.unary_unary(f"/tensorflow.serving.PredictionService/{method}")(data, timeout=60)
    except grpc.RpcError as exc:
        assert exc.code() not in SERVER_FAULT_CODES, (exc.code(), exc.details(), data[:300])
        assert exc.details(), (exc.code(), data[:300])


@settings(FUZZ, max_examples=int(800 * SCALE))
@given(data=st.one_of(predict_bytes(), mutated(_PREDICT_SEEDS), st.binary(max_size=64)))
def test_grpc_predict_never_answers_a_server_fault(shared_models_server: ServerProcess, data: bytes) -> None:
    _call(shared_models_server, "Predict", data)


@settings(FUZZ, max_examples=int(800 * SCALE))
@given(request=st.one_of(
    examples_bytes(),
    st.tuples(st.sampled_from(["Classify", "Regress", "MultiInference"]),
              st.one_of(mutated(_CLASSIFY_SEEDS), st.binary(max_size=64))),
))
def test_grpc_examples_never_answer_a_server_fault(shared_models_server: ServerProcess,
                                                   request: tuple[str, bytes]) -> None:
    _call(shared_models_server, *request)


def test_the_server_still_serves_after_the_fuzzing(shared_models_server: ServerProcess) -> None:
    assert shared_models_server.proc.poll() is None
    assert_still_serving(shared_models_server)
