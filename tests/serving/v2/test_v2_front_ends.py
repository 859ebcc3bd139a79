"""The V2 front ends from the wire: routes, addressing (versions, labels, signatures), error JSON
and codes for client mistakes, the limits shared with TF Serving's front ends, and metrics."""

from __future__ import annotations

from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from tfship.wire import v2
from tfship.wire.protos import open_inference_pb2 as pb

X = np.random.default_rng(5).normal(size=(2, 4)).astype(np.float32)


@pytest.fixture(scope="module")
def http(v2_server: Any) -> Any:
    with httpx.Client(base_url=v2_server.rest_url, timeout=60) as client:
        yield client


def _infer(http: Any, path: str, request: v2.InferRequest, binary: bool = False) -> httpx.Response:
    body, header = v2.request_to_json(request, binary=binary)
    headers = {"content-type": "application/json"} if header is None else {
        "content-type": "application/octet-stream", v2.HEADER_LENGTH: str(header)}
    return http.post(path, content=body, headers=headers)


def test_server_routes(http: Any) -> None:
    assert http.get("/v2/health/live").json() == {"live": True}
    assert http.get("/v2/health/ready").json() == {"ready": True}
    meta = http.get("/v2").json()
    assert meta["name"] == "tfship-model-server" and meta["extensions"] == ["binary_tensor_data"]
    assert http.get("/v2/models/keras/ready").status_code == 200
    assert http.get("/v2/models/keras/versions/2/ready").status_code == 200
    assert http.get("/v2/models/keras/versions/7/ready").status_code == 503  # not AVAILABLE: not ready
    assert http.get("/v1/models/keras").status_code == 200  # TF Serving's API on the same port


@pytest.mark.parametrize(("path", "version"), [
    ("/v2/models/keras/infer", "2"),
    ("/v2/models/keras/versions/1/infer", "1"),
    ("/v2/models/keras/versions/stable/infer", "1"),  # a TF Serving version label
    ("/v2/models/keras/versions/canary/infer", "2"),
])
def test_versions_and_labels_in_the_path(http: Any, keras_model: Any, path: str, version: str) -> None:
    response = _infer(http, path, v2.InferRequest("keras", inputs={"features": X}, id="r1"))
    assert response.status_code == 200, response.text
    answer = v2.response_from_json(response.content)
    assert (answer.model_name, answer.model_version, answer.id) == ("keras", version, "r1")
    np.testing.assert_allclose(answer.outputs["probs"], np.asarray(keras_model(X)), rtol=1e-5, atol=1e-5)


def test_binary_answer_only_for_outputs_that_ask(http: Any) -> None:
    request = v2.InferRequest("keras", inputs={"features": X}, outputs=[v2.RequestedOutput("probs", True)])
    response = _infer(http, "/v2/models/keras/infer", request, binary=True)
    assert response.headers["content-type"] == "application/octet-stream"
    length = int(response.headers[v2.HEADER_LENGTH])
    assert len(response.content) == length + 2 * 3 * 4
    assert v2.response_from_json(response.content, length).outputs["probs"].shape == (2, 3)
    plain = _infer(http, "/v2/models/keras/infer", v2.InferRequest("keras", inputs={"features": X}), binary=True)
    assert v2.HEADER_LENGTH.lower() not in plain.headers and plain.json()["outputs"][0]["data"]


def test_signature_by_request_parameter(http: Any) -> None:
    request = v2.InferRequest("keras", inputs={"features": X}, parameters={"signature_name": "nope"})
    response = _infer(http, "/v2/models/keras/infer", request)
    assert response.status_code == 400 and "nope" in response.json()["error"]


@pytest.mark.parametrize(("method", "path", "body", "headers", "status", "needle"), [
    ("POST", "/v2/models/keras/infer", b"{", {}, 400, "JSON Parse error"),
    ("POST", "/v2/models/keras/infer", b'{"inputs": []}', {}, 400, "non-empty 'inputs'"),
    ("POST", "/v2/models/keras/infer", b'{"inputs": []}', {v2.HEADER_LENGTH: "x"}, 400, "whole number"),
    ("POST", "/v2/models/keras/infer", b'{"inputs": []}', {v2.HEADER_LENGTH: "99"}, 400, "the body has 14 bytes"),
    ("POST", "/v2/models/keras/infer",
     b'{"inputs":[{"name":"features","shape":[2,4],"datatype":"FP32","data":[1,2,3]}]}', {}, 400, "holds 8"),
    ("POST", "/v2/models/keras/infer", b'{"inputs":[{"name":"features","shape":[' + b"1," * 70 + b'1],'
     b'"datatype":"FP32","data":[1]}]}', {}, 400, "at most 64"),
    ("POST", "/v2/models/keras/infer", b'{"inputs":' + b"[" * 2000 + b"]" * 2000 + b"}", {}, 400, "nest deeper"),
    ("POST", "/v2/models/keras/versions/9/infer",
     b'{"inputs":[{"name":"features","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}', {}, 404, "keras, 9"),
    ("POST", "/v2/models/keras/versions/beta/infer",
     b'{"inputs":[{"name":"features","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}', {}, 400, "label: beta"),
    ("GET", "/v2/models/keras/infer", b"", {}, 405, "Use POST"),
    ("POST", "/v2/models/keras", b"{}", {}, 405, "Use GET"),
    ("GET", "/v2/models/nope", b"", {}, 404, "nope"),
    ("GET", "/v2/nowhere", b"", {}, 404, "No V2 route"),
])
def test_client_mistakes_get_v2_error_json_and_4xx(http: Any, method: str, path: str, body: bytes,
                                                     headers: dict[str, str], status: int, needle: str) -> None:
    response = http.request(method, path, content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert needle in response.json()["error"]


def test_body_limit_is_the_rest_servers(http: Any) -> None:
    # --rest_api_max_request_bytes (the fixture sets 4 MB) bounds /v2 bodies as it bounds /v1's
    big = np.zeros((300_000, 4), np.float32)  # 4.8 MB of binary data
    response = _infer(http, "/v2/models/keras/infer", v2.InferRequest("keras", inputs={"features": big}), binary=True)
    assert response.status_code == 413 and "exceeds" in response.json()["error"]


def test_grpc_service(v2_server: Any, keras_model: Any) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{v2_server.grpc_port}") as channel:
        def call(method: str, message: Any, reply: Any) -> Any:
            raw = channel.unary_unary(f"/inference.GRPCInferenceService/{method}")(message.SerializeToString())
            return reply.FromString(raw)

        assert call("ServerLive", pb.ServerLiveRequest(), pb.ServerLiveResponse).live
        assert call("ServerReady", pb.ServerReadyRequest(), pb.ServerReadyResponse).ready
        assert call("ModelReady", pb.ModelReadyRequest(name="keras", version="canary"), pb.ModelReadyResponse).ready
        meta = call("ModelMetadata", pb.ModelMetadataRequest(name="keras"), pb.ModelMetadataResponse)
        assert list(meta.versions) == ["1", "2"] and meta.inputs[0].shape == [-1, 4]
        request = v2.InferRequest("keras", "stable", "g1", {"features": X})
        for raw in (True, False):  # raw_input_contents and typed contents
            reply = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")(
                v2.request_to_proto(request, raw=raw))
            answer = v2.response_from_proto(reply)
            assert (answer.model_version, answer.id) == ("1", "g1")
            np.testing.assert_allclose(answer.outputs["probs"], np.asarray(keras_model(X)), rtol=1e-5, atol=1e-5)
        with pytest.raises(grpc.RpcError) as info:
            channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")(b"\xff\xff\xff")
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as info:
            channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")(
                v2.request_to_proto(v2.InferRequest("keras", inputs={"features": X.astype(np.float64)})))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "float" in info.value.details()


def _predict_count(http: Any, version: str) -> float:
    for line in http.get("/monitoring/prometheus/metrics").text.splitlines():
        if (line.startswith(":tensorflow:serving:request_count{") and 'API="predict"' in line
                and 'entrypoint="REST"' in line and 'model_name="keras"' in line and 'status="OK"' in line
                and f'version="{version}"' in line):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_requests_are_counted_per_version_by_the_data_plane(http: Any) -> None:
    before = _predict_count(http, "1")
    _infer(http, "/v2/models/keras/versions/stable/infer", v2.InferRequest("keras", inputs={"features": X}))
    assert _predict_count(http, "1") == before + 1
