"""Hostile inputs for tfship-model-server, shared by test_hostile_input.py (one test each) and
test_fuzz.py (the seeds of its generated inputs).

Every case is what a client sends and what it must get back: a 4xx / INVALID_ARGUMENT (or the code
TF Serving gives) with a message naming the problem. Inputs the fuzz suite ever found are added
here, so they stay regular tests.
"""

from __future__ import annotations

import gzip
import socket
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import numpy as np
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import classification_pb2, predict_pb2

from tfship.wire.tensor import to_tensor_proto

PREDICT = "/v1/models/default:predict"
REGRESS = "/v1/models/two:regress"
GRPC_PREDICT = "/tensorflow.serving.PredictionService/Predict"
GRPC_CLASSIFY = "/tensorflow.serving.PredictionService/Classify"
#: gRPC codes that blame the server: a client's bytes must never get one.
SERVER_FAULT_CODES = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DATA_LOSS,
                      grpc.StatusCode.UNAVAILABLE}


@dataclass(frozen=True)
class RestCase:
    id: str
    path: str
    body: bytes
    status: int
    fragment: str
    headers: tuple[tuple[str, str], ...] = ()


def _deep(levels: int, inner: bytes = b"1.0") -> bytes:
    return b"[" * levels + inner + b"]" * levels


def _examples(example: bytes) -> bytes:
    return b'{"signature_name": "regress_x_to_y", "examples": [' + example + b"]}"


REST_CASES = [
    RestCase("nested-100k", PREDICT, b'{"instances": ' + _deep(100_000) + b"}", 400,
             "nest deeper than 1024 levels"),
    RestCase("unclosed-1M", PREDICT, b'{"instances": ' + b"[" * 1_000_000, 413,
             "exceeds the limit of 1000000 bytes"),
    RestCase("unclosed-900k", PREDICT, b'{"instances": ' + b"[" * 900_000, 400,
             "nest deeper than 1024 levels"),
    RestCase("nested-70", PREDICT, b'{"instances": ' + _deep(70) + b"}", 400,
             "levels deep, but a tensor has at most 64 dimensions"),
    RestCase("nested-1000-with-nan", PREDICT, b'{"instances": [1.0], "x": ' + _deep(1000, b"NaN") + b"}",
             200, ""),
    RestCase("1e400-instances", PREDICT, b'{"instances": [[1e400]]}', 400,
             "Number too big to be stored in double. at offset: 16"),
    RestCase("1e400-after-nan", PREDICT, b'{"instances": [NaN, -1e400]}', 400,
             "Number too big to be stored in double. at offset: 20"),
    RestCase("1e400-in-a-large-array", PREDICT, b'{"instances": [[' + b"0.5," * 20_000 + b"1e400]]}", 400,
             "Number too big to be stored in double. at offset: 80016"),  # simdjson's path declines
    RestCase("1e400-inputs", PREDICT, b'{"inputs": {"x": [1e400]}}', 400, "Number too big"),
    RestCase("huge-int-inputs", PREDICT, b'{"inputs": [1' + b"0" * 400 + b"]}", 400, "Number too big"),
    RestCase("1e400-examples", REGRESS, b'{"examples": [{"x": 1e400}]}', 400, "Number too big"),
    RestCase("5000-digit-int-example", REGRESS, b'{"examples": [{"x": NaN, "y": 1' + b"0" * 5000 + b"}]}",
             400, "Number too big"),
    RestCase("lone-surrogate", PREDICT, b'{"instances": ["\\ud800"]}', 400,
             "The surrogate pair in string is invalid"),
    RestCase("5000-digit-version", "/v1/models/default/versions/" + "9" * 5000 + ":predict",
             b'{"instances": [1.0]}', 400, "Failed to convert version"),
    RestCase("gzip-corrupt", PREDICT, b"\x1f\x8b\x08\x00garbage", 400, "Failed to decompress gzip",
             (("Content-Encoding", "gzip"),)),
    RestCase("gzip-bomb", PREDICT, gzip.compress(b" " * 5_000_000), 413, "exceeds the limit",
             (("Content-Encoding", "gzip"),)),
    RestCase("gzip-truncated", PREDICT, gzip.compress(b'{"instances": [1.0]}')[:15], 400,
             "Failed to decompress gzip request body: the gzip stream ends early",
             (("Content-Encoding", "gzip"),)),
    RestCase("b64-not-a-string", PREDICT, b'{"instances": [{"b64": 5}]}', 400, ""),
    RestCase("example-int-below-int64", REGRESS, _examples(b'{"x": -9223372036854775809}'),
             200, ""),  # a double, like rapidjson reads it
    RestCase("example-uint64", REGRESS, _examples(b'{"x": 9223372036854775808}'), 400,
             "Only int64 is supported"),
]


@dataclass(frozen=True)
class RawHttpCase:
    id: str
    request: bytes
    status: int
    fragment: str


RAW_HTTP_CASES = [
    RawHttpCase("chunk-size-negative",
                b"POST /v1/models/default:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"-1\r\n{}\r\n0\r\n\r\n", 400, "chunk size must be a non-negative hexadecimal"),
    RawHttpCase("chunk-size-garbage",
                b"POST /v1/models/default:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"zz\r\n{}\r\n0\r\n\r\n", 400, "Malformed chunked request body"),
    RawHttpCase("content-length-negative",
                b"POST /v1/models/default:predict HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{}",
                400, "Invalid Content-Length header"),
    RawHttpCase("chunked-good",
                b"POST /v1/models/default:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"b\r\n{\"instances\r\n09;ext=1\r\n\": [2.0]}\r\n0\r\n\r\n", 200, "3.0"),
]


def assert_still_serving(server: Any) -> None:
    """A good REST and gRPC predict on ``default`` (half_plus_two) get the right answers."""
    r = httpx.post(f"{server.rest_url}/v1/models/default:predict", json={"instances": [2.0]}, timeout=30)
    assert r.status_code == 200 and r.json() == {"predictions": [3.0]}
    response = server.prediction.Predict(good_predict_request(4.0), timeout=30)
    assert list(response.outputs["y"].float_val) == [4.0]


def raw_http(port: int, request: bytes, timeout: float = 30.0) -> tuple[int, bytes]:
    """Send ``request`` as is and read one response (the server closes or sends Content-Length)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return int(head.split(b" ", 2)[1]), body


# ----------------------------------------------------------------------------- gRPC


def _predict_bytes(dims: tuple[int, ...]) -> bytes:
    """A Predict request for ``default`` whose float input ``x`` claims ``dims`` and holds 1 value."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "default"
    tensor = request.inputs["x"]
    tensor.dtype = 1
    for size in dims:
        tensor.tensor_shape.dim.add().size = size
    tensor.float_val.append(1.0)
    return request.SerializeToString()


@dataclass(frozen=True)
class GrpcCase:
    id: str
    method: str
    data: bytes
    code: grpc.StatusCode
    fragment: str


def good_predict_request(x: float = 2.0) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "default"
    to_tensor_proto(np.array([x], np.float32), request.inputs["x"])
    return request


def classify_request() -> bytes:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "two"
    request.model_spec.signature_name = "classify_x_to_y"
    example = example_pb2.Example()
    example.features.feature["x"].float_list.value.append(2.0)
    request.input.example_list.examples.add().CopyFrom(example)
    return request.SerializeToString()


_INVALID = grpc.StatusCode.INVALID_ARGUMENT
GRPC_CASES = [
    GrpcCase("shape-2**40-one-value", GRPC_PREDICT, _predict_bytes((2**40,)), _INVALID,
             "tensor parsing error: x. Tensor of shape [1099511627776] has 1099511627776 elements"),
    GrpcCase("shape-300-dims", GRPC_PREDICT, _predict_bytes((1,) * 300), _INVALID,
             "300 dimensions; at most 64"),
    GrpcCase("shape-overflow", GRPC_PREDICT, _predict_bytes((2**40,) * 3), _INVALID, "is too large"),
    GrpcCase("not-a-message", GRPC_PREDICT, b"\xff\xff\xff", _INVALID,
             "Could not parse the request as a tensorflow.serving.PredictRequest"),
    GrpcCase("truncated-large", GRPC_PREDICT, b"\x12\x85\x80\x04" + bytes(70_000), _INVALID,
             "Could not parse the request"),
    GrpcCase("classify-not-a-message", GRPC_CLASSIFY, b"\x0a\x05abc", _INVALID,
             "Could not parse the request as a tensorflow.serving.ClassificationRequest"),
    GrpcCase("classify-truncated", GRPC_CLASSIFY, classify_request()[:-3], _INVALID, "Could not parse"),
    GrpcCase("status-not-a-message", "/tensorflow.serving.ModelService/GetModelStatus", b"\x0a\x05abc",
             _INVALID, "Could not parse the request as a tensorflow.serving.GetModelStatusRequest"),
    GrpcCase("reload-not-a-message", "/tensorflow.serving.ModelService/HandleReloadConfigRequest",
             b"\x0a\xff", _INVALID, "Could not parse the request as a tensorflow.serving.ReloadConfigRequest"),
]


def raw_call(channel: grpc.Channel, method: str, data: bytes, timeout: float = 30.0) -> bytes:
    """Call ``method`` with ``data`` as the serialized request (bytes in, bytes out)."""
    return channel.unary_unary(method)(data, timeout=timeout)
