"""gRPC + REST API of tfship-model-server on TF Serving's test models (one server).

Values are what the models really compute (see the testdata README; the server runs the generated
stand-ins, which tests/test_tf_serving_models.py proves identical); messages and codes are TF
Serving's (spec sections 4-6). The metadata tests compare with TF Serving's own JSON in ../shared.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from google.protobuf import json_format
from model_server_process import ServerProcess, launch, wait_until
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    inference_pb2,
    predict_pb2,
    regression_pb2,
)

from tfship.wire import json as wjson
from tfship.wire.tensor import to_ndarray, to_tensor_proto

TWO = "saved_model_half_plus_two_2_versions"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tf_serving_testdata: Path) -> Any:
    td = tf_serving_testdata
    tmp = tmp_path_factory.mktemp("api")
    config = tmp / "models.config"
    config.write_text(f"""
model_config_list {{
  config {{ name: "default" base_path: "{td / 'saved_model_half_plus_two_cpu'}" model_platform: "tensorflow" }}
  config {{ name: "half_plus_three" base_path: "{td / 'saved_model_half_plus_three'}" model_platform: "tensorflow" }}
  config {{ name: "tf2" base_path: "{td / 'saved_model_half_plus_two_tf2_cpu'}" model_platform: "tensorflow" }}
  config {{
    name: "{TWO}" base_path: "{td / TWO}" model_platform: "tensorflow"
    model_version_policy {{ all {{}} }}
    version_labels {{ key: "stable" value: 123 }}
    version_labels {{ key: "canary" value: 124 }}
  }}
}}
""")
    srv = launch(
        tmp / "server",
        f"--model_config_file={config}",
        "--allow_version_labels_for_unavailable_models=true",
        f"--monitoring_config_file={td / 'monitoring_config.txt'}",
        "--rest_api_max_request_bytes=1000000",
        "--rest_api_enable_cors_support",
        f"--grpc_socket_path={tmp / 'grpc.sock'}",
        models=("default", "half_plus_three", "tf2", TWO),
    )


    wait_until(lambda: srv.available_versions(TWO) == {123, 124}, 60, "both versions")
    yield srv
    srv.terminate()


@pytest.fixture(scope="module")
def rest(server: ServerProcess) -> Any:
    with httpx.Client(base_url=server.rest_url, timeout=30) as client:
        yield client


def example(**features: float) -> example_pb2.Example:
    ex = example_pb2.Example()
    for k, v in features.items():
        ex.features.feature[k].float_list.value.append(v)
    return ex


def predict(server: ServerProcess, model: str, x: Any, **spec: Any) -> Any:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = model
    for k, v in spec.items():
        if k == "version":
            req.model_spec.version.value = v
        else:
            setattr(req.model_spec, k, v)
    to_tensor_proto(np.asarray(x, np.float32), req.inputs["x"])
    return server.prediction.Predict(req, timeout=30)


def rpc_error(call: Any, *args: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, timeout=30)
    return info.value


# ----------------------------------------------------------------------------- gRPC predict


def test_grpc_predict_half_plus_two_typed_response(server: ServerProcess) -> None:
    resp = predict(server, "default", [[1.0], [2.0], [3.0], [4.0]])
    y = resp.outputs["y"]
    assert list(y.float_val) == [2.5, 3.0, 3.5, 4.0]
    assert not y.tensor_content
    assert [d.size for d in y.tensor_shape.dim] == [4, 1]
    assert resp.model_spec.name == "default"
    assert resp.model_spec.version.value == 123
    assert resp.model_spec.signature_name == "serving_default"


def test_grpc_predict_feeds_bypass_static_shape_checks(server: ServerProcess) -> None:
    # upstream feeds a [3] tensor to x:0 declared [-1,1]; and a scalar to half_plus_three
    assert list(predict(server, "default", [1.0, 2.0, 5.0]).outputs["y"].float_val) == [2.5, 3.0, 4.5]
    resp = predict(server, "half_plus_three", 2.0)
    assert list(resp.outputs["y"].float_val) == [4.0]
    assert len(resp.outputs["y"].tensor_shape.dim) == 0


def test_grpc_predict_tf2_model(server: ServerProcess) -> None:
    assert to_ndarray(predict(server, "tf2", [2.0]).outputs["y"]).tolist() == [3.0]


def test_grpc_versions_and_labels(server: ServerProcess) -> None:
    assert predict(server, TWO, [[1.0], [2.0]]).model_spec.version.value == 124
    assert predict(server, TWO, [[1.0]], version=123).model_spec.version.value == 123
    resp = predict(server, TWO, [[1.0], [2.0]], version_label="stable")
    assert resp.model_spec.version.value == 123
    assert list(resp.outputs["y"].float_val) == [2.5, 3.0]
    assert not resp.model_spec.version_label  # labels are not echoed
    assert predict(server, TWO, [[1.0]], version_label="canary").model_spec.version.value == 124
    with pytest.raises(grpc.RpcError) as info:
        predict(server, TWO, [[1.0]], version_label="nope")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Unrecognized servable version label: nope" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        predict(server, TWO, [[1.0]], version=125)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert f"Servable not found for request: Specific({TWO}, 125)" in info.value.details()


@pytest.mark.parametrize(
    ("mutate", "code", "fragment"),
    [
        (lambda r: r.ClearField("model_spec"), "INVALID_ARGUMENT", "Missing ModelSpec"),
        (lambda r: setattr(r.model_spec, "name", ""), "INVALID_ARGUMENT", "ModelSpec has no name"),
        (lambda r: setattr(r.model_spec, "name", "half"), "NOT_FOUND",
         "Servable not found for request: Latest(half)"),
        (lambda r: setattr(r.model_spec, "signature_name", "nope"), "FAILED_PRECONDITION",
         'Serving signature key "nope" not found.'),
        (lambda r: r.inputs["extra"].CopyFrom(r.inputs["x"]), "INVALID_ARGUMENT",
         "input size does not match signature"),
        (lambda r: r.output_filter.append("zz"), "INVALID_ARGUMENT",
         "output tensor alias not found in signature"),
        (lambda r: r.output_filter.extend(["y", "y"]), "INVALID_ARGUMENT",
         "duplicate output tensor alias"),
    ],
)
def test_grpc_predict_errors(server: ServerProcess, mutate: Any, code: str, fragment: str) -> None:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "default"
    to_tensor_proto(np.array([[1.0]], np.float32), req.inputs["x"])
    mutate(req)
    err = rpc_error(server.prediction.Predict, req)
    assert err.code().name == code
    assert fragment in err.details()


def test_grpc_wrong_dtype_and_long_messages_truncated(server: ServerProcess) -> None:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "default"
    to_tensor_proto(np.array([["a"]], object), req.inputs["x"])
    assert rpc_error(server.prediction.Predict, req).code() == grpc.StatusCode.INVALID_ARGUMENT
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "default"
    req.model_spec.signature_name = "s" * 3000
    to_tensor_proto(np.array([[1.0]], np.float32), req.inputs["x"])
    details = rpc_error(server.prediction.Predict, req).details()
    assert details.endswith("...TRUNCATED")
    assert len(details) == 1024 + len("...TRUNCATED")


# ----------------------------------------------------------------------------- classify/regress


def test_grpc_classify_and_regress(server: ServerProcess) -> None:
    req = classification_pb2.ClassificationRequest()
    req.model_spec.name = "default"
    req.model_spec.signature_name = "classify_x_to_y"
    req.input.example_list.examples.add().CopyFrom(example(x=2.0))
    resp = server.prediction.Classify(req, timeout=30)
    assert resp.result.classifications[0].classes[0].score == 3.0
    assert resp.result.classifications[0].classes[0].label == ""
    assert resp.model_spec.version.value == 123

    rreq = regression_pb2.RegressionRequest()
    rreq.model_spec.name = "default"
    rreq.model_spec.signature_name = "regress_x_to_y"
    rreq.input.example_list.examples.add().CopyFrom(example(x=80.0))
    rreq.input.example_list.examples.add().CopyFrom(example(x=2.0))
    resp2 = server.prediction.Regress(rreq, timeout=30)
    assert [r.value for r in resp2.result.regressions] == [42.0, 3.0]

    rreq.model_spec.signature_name = "nope"
    err = rpc_error(server.prediction.Regress, rreq)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "No signature was found with the name: nope" in err.details()
    rreq.input.example_list.ClearField("examples")
    rreq.model_spec.signature_name = "regress_x_to_y"
    assert "Input is empty" in rpc_error(server.prediction.Regress, rreq).details()


def test_grpc_classify_tf2_and_context(server: ServerProcess) -> None:
    req = regression_pb2.RegressionRequest()
    req.model_spec.name = "tf2"
    req.model_spec.signature_name = "regress_x_to_y2"
    listed = req.input.example_list_with_context
    listed.context.CopyFrom(example(x=10.0))
    listed.examples.add().CopyFrom(example(x=2.0))
    assert [r.value for r in server.prediction.Regress(req, timeout=30).result.regressions] == [4.0]


def multi_inference_request(model: str, tasks: Any, x: float) -> inference_pb2.MultiInferenceRequest:
    """A MultiInferenceRequest running ``(signature, method)`` tasks on one example ``x``."""
    req = inference_pb2.MultiInferenceRequest()
    for sig, method in tasks:
        task = req.tasks.add()
        task.model_spec.name = model
        task.model_spec.signature_name = sig
        task.method_name = f"tensorflow/serving/{method}"
    req.input.example_list.examples.add().CopyFrom(example(x=x))
    return req


def test_grpc_multi_inference(server: ServerProcess) -> None:
    req = multi_inference_request(TWO, (("regress_x_to_y", "regress"), ("classify_x_to_y", "classify")), 20.0)
    resp = server.prediction.MultiInference(req, timeout=30)
    assert resp.results[0].regression_result.regressions[0].value == 12.0
    assert resp.results[1].classification_result.classifications[0].classes[0].score == 12.0
    assert resp.results[0].model_spec.version.value == 124
    req.tasks[1].model_spec.name = "default"
    err = rpc_error(server.prediction.MultiInference, req)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "must access the same model name" in err.details()
    req.tasks[1].model_spec.name = TWO
    req.tasks[1].method_name = "tensorflow/serving/predict"
    assert rpc_error(server.prediction.MultiInference, req).code() == grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.parametrize("tasks,expected", [
    ((("regress_x_to_y", "regress"), ("regress_x_to_y2", "regress")), [3.0, 4.0]),
    ((("regress_x_to_y2", "regress"), ("classify_x_to_y", "classify")), [4.0, 3.0]),
])
def test_grpc_multi_inference_tf2_signatures_each_with_their_own_input(
    server: ServerProcess, tasks: Any, expected: list[float]
) -> None:
    """TF2 exports give every signature its own input placeholder: the examples feed all of them
    (upstream runs MultiInference on this model in its own tests)."""
    req = multi_inference_request("tf2", tasks, 2.0)
    resp = server.prediction.MultiInference(req, timeout=30)
    got = [r.regression_result.regressions[0].value if r.HasField("regression_result")
           else r.classification_result.classifications[0].classes[0].score for r in resp.results]
    assert got == expected
    assert [r.model_spec.signature_name for r in resp.results] == [sig for sig, _ in tasks]


@pytest.mark.tf_serving_shared
def test_grpc_multi_inference_on_tf_serving_real_tf2_model(
    start_model_server: Any, tf_serving_shared: Path
) -> None:
    """The same, on the SavedModel TF Serving's own MultiInference test uses (TF 2.14 export)."""
    server = start_model_server(
        "--model_name=tf2", f"--model_base_path={tf_serving_shared / 'saved_model_half_plus_two_tf2_cpu'}",
        models=("tf2",), rest=False,
    )
    req = multi_inference_request("tf2", (("regress_x_to_y", "regress"), ("classify_x_to_y", "classify")), 2.0)
    resp = server.prediction.MultiInference(req, timeout=30)
    assert resp.results[0].regression_result.regressions[0].value == 3.0
    assert resp.results[1].classification_result.classifications[0].classes[0].score == 3.0


# ----------------------------------------------------------------------------- metadata/status


@pytest.mark.tf_serving_shared
def test_grpc_metadata_equals_upstream_json(server: ServerProcess, tf_serving_shared: Path) -> None:
    req = get_model_metadata_pb2.GetModelMetadataRequest()
    req.model_spec.name = "default"
    req.metadata_field.append("signature_def")
    resp = server.prediction.GetModelMetadata(req, timeout=30)
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    resp.metadata["signature_def"].Unpack(sig_map)
    expected = json.loads((tf_serving_shared / "half_plus_two_model_metadata.json").read_text())
    got = json_format.MessageToDict(sig_map, preserving_proto_field_name=True,
                                    always_print_fields_with_no_presence=True)
    assert got == expected["metadata"]["signature_def"]
    assert resp.model_spec.version.value == 123
    req.ClearField("metadata_field")
    assert rpc_error(server.prediction.GetModelMetadata, req).code() == grpc.StatusCode.INVALID_ARGUMENT


def test_grpc_status(server: ServerProcess) -> None:
    resp = server.status(TWO)
    assert [(s.version, s.state) for s in resp.model_version_status] == [(124, 30), (123, 30)]
    assert resp.model_version_status[0].status.error_code == 0
    with pytest.raises(grpc.RpcError) as info:
        server.status(TWO, 7)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert f"Could not find version 7 of model {TWO}" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        server.status("nope")
    assert "Could not find any versions of model nope" in info.value.details()


# ----------------------------------------------------------------------------- REST


def test_rest_predict_row_and_columnar(rest: httpx.Client) -> None:
    r = rest.post("/v1/models/default:predict", json={"instances": [2.0, 3.0, 4.0]})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == {"predictions": [3.0, 3.5, 4.0]}
    r = rest.post("/v1/models/default:predict", json={"inputs": [2.0, 3.0, 4.0]})
    assert r.json() == {"outputs": [3.0, 3.5, 4.0]}
    r = rest.post("/v1/models/default:predict", json={"instances": [[1.0, 2.0], [3.0, 4.0]]})
    assert r.json() == {"predictions": [[2.5, 3.0], [3.5, 4.0]]}
    assert b"3.0" in rest.post("/v1/models/default:predict", json={"instances": [2.0]}).content
    r = rest.post(f"/v1/models/{TWO}/labels/stable:predict", json={"instances": [[1.0]]})
    assert r.json() == {"predictions": [[2.5]]}
    # columnar: keys that are not signature inputs are ignored (as upstream)
    r = rest.post("/v1/models/default:predict", json={"inputs": {"x": [[1.0]], "extra": 1}})
    assert r.json() == {"outputs": [[2.5]]}
    r = rest.post("/v1/models/half_plus_three:predict", json={"inputs": 2.0})
    assert r.json() == {"outputs": 4.0}
    r = rest.post("/v1/models/tf2:predict", json={"instances": [{"x": 2.0}]})
    assert r.json() == {"predictions": [3.0]}


def test_rest_classify_regress(rest: httpx.Client) -> None:
    r = rest.post("/v1/models/default:classify",
                  json={"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]})
    assert r.json() == {"results": [[["", 3.0]]]}
    r = rest.post("/v1/models/half_plus_three:regress",
                  json={"signature_name": "tensorflow/serving/regress",
                        "examples": [{"x": 1.0}, {"x": 2.0}]})
    assert r.json() == {"results": [3.5, 4.0]}
    r = rest.post("/v1/models/default:regress",
                  json={"signature_name": "regress_x_to_y", "context": {"x": 80.0}, "examples": [{}]})
    assert r.json() == {"results": [42.0]}
    r = rest.post("/v1/models/default:regress", json={"signature_name": "regress_x_to_y"})
    assert r.status_code == 400 and "'examples' is expected" in r.json()["error"]


def test_rest_gzip_body(rest: httpx.Client) -> None:
    body = gzip.compress(json.dumps({"instances": [2.0]}).encode())
    r = rest.post("/v1/models/default:predict", content=body,
                  headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert r.json() == {"predictions": [3.0]}


def test_rest_status(rest: httpx.Client) -> None:
    assert rest.get("/v1/models/default").json() == {"model_version_status": [
        {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert rest.get(f"/v1/models/{TWO}/versions/123").json()["model_version_status"][0]["version"] == "123"
    assert len(rest.get(f"/v1/models/{TWO}/labels/stable").json()["model_version_status"]) == 2


@pytest.mark.tf_serving_shared
def test_rest_metadata_equals_upstream_json(rest: httpx.Client, tf_serving_shared: Path) -> None:
    expected = json.loads((tf_serving_shared / "half_plus_two_model_metadata.json").read_text())
    assert rest.get("/v1/models/default/metadata").json() == expected
    expected2 = json.loads((tf_serving_shared / f"{TWO}_metadata.json").read_text())
    assert rest.get(f"/v1/models/{TWO}/versions/123/metadata").json() == expected2
    assert rest.get(f"/v1/models/{TWO}/labels/stable/metadata").json() == expected2


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"),
    [
        ("/v1/models/default:predict", b"", 400, "JSON Parse error: The document is empty"),
        ("/v1/models/default:predict", b'{"instances": [1.0', 400, "JSON Parse error"),
        ("/v1/models/nope:predict", b'{"instances": [1.0', 400, "JSON Parse error"),
        ("/v1/models/nope:predict", b'{"instances": [1.0]}', 404,
         "Servable not found for request: Latest(nope)"),
        ("/v1/models/default/versions/9:predict", b'{"instances": [1.0]}', 404,
         "Specific(default, 9)"),
        ("/v1/models/default/labels/x:predict", b'{"instances": [1.0]}', 400,
         "Unrecognized servable version label: x"),
        ("/v1/models/default:predict", b'{"signature_name": "zz", "instances": [1.0]}', 400,
         'Serving signature name: "zz" not found in signature def'),
        ("/v1/models/default:predict", b'{"signature_name": 5, "instances": [1.0]}', 400,
         "'signature_name' key must be a string value."),
        ("/v1/models/default:predict", b'{"instances": [1.0], "inputs": [1.0]}', 400,
         "only one of 'inputs' or 'instances'"),
        ("/v1/models/default:predict", b'{"foo": 1}', 400, "Missing 'inputs' or 'instances' key"),
        ("/v1/models/default:predict", b'{"instances": ["a"]}', 400, "is not of expected type: float"),
        ("/v1/models/default:predict", b'{"instances": [[1.0], [1.0, 2.0]]}', 400,
         "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: "
         "Expecting tensor size: 1 but got: 2"),
        ("/v1/models/default:predict", b'{"inputs": {"y": [1.0]}}', 400, "Missing named input: x"),
        ("/v1/models/default:predict", b'{"instances": [{"x": [1.0], "zz": 1.0}]}', 400,
         "JSON object: does not have named input: zz"),
        ("/v1/models/default:predict", b'{"instances": [{"x": [1.0]}, [1.0]]}', 400,
         "Expecting object but got list at item 1 of input list"),
        ("/v1/models/default:predict", b'{"instances": []}', 400, "No values in 'instances' array"),
        ("/v1/models/default:regress", b'{"examples": [{"x": null}]}', 400,
         "Feature: x has element with unexpected JSON type: Null"),
        ("/v1/models/default:regress", b'{"examples": [{"x": [1, 2.5]}]}', 400,
         "Unexpected element type in feature: x expecting type: int64"),
        ("/v1/models/default:predict", b'{"instances": [{"b64": "!!!"}]}', 400, ""),
        ("/v1/models/default:predict", b'[1, 2]', 400, ""),
        ("/v1/models/default/versions/99999999999999999999:predict", b'{"instances": [1.0]}', 400,
         "Failed to convert version: 99999999999999999999 to numeric."),
        ("/v1/models/default:explode", b"{}", 400, "Malformed request: POST /v1/models/default:explode"),
    ],
)
def test_rest_bad_requests(rest: httpx.Client, path: str, body: bytes, status: int, fragment: str) -> None:
    r = rest.post(path, content=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert fragment in r.json()["error"]
    # the server keeps serving
    assert rest.post("/v1/models/default:predict", json={"instances": [2.0]}).status_code == 200


def test_rest_routing_and_limits(rest: httpx.Client) -> None:
    assert rest.get("/v1/models").json() == {"error": "Missing model name in request."}
    assert rest.get("/nothing/here").status_code == 404
    assert "Malformed request: PUT" in rest.put("/v1/models/default", content=b"{}").json()["error"]
    assert rest.options("/v1/models/default", headers={"Origin": "http://a.b"}).status_code == 200
    assert rest.options("/v1/models/default").status_code == 400
    big = b'{"instances": [' + b"1.0," * 300_000 + b"1.0]}"
    r = rest.post("/v1/models/default:predict", content=big)
    assert r.status_code == 413 and "rest_api_max_request_bytes" in r.json()["error"]
    assert rest.post("/v1/models/default:predict", json={"instances": [2.0]}).status_code == 200


def test_monitoring_page(rest: httpx.Client) -> None:
    rest.post("/v1/models/default:predict", json={"instances": [2.0]})
    rest.post("/v1/models/default:classify",
              json={"signature_name": "classify_x_to_y", "examples": [{"x": 1.0}, {"x": 2.0}]})
    page = rest.get("/monitoring/prometheus/metrics")
    assert page.status_code == 200
    assert "# TYPE :tensorflow:serving:request_count counter" in page.text  # no _total, as upstream
    assert 'entrypoint="REST"' in page.text and 'entrypoint="GRPC"' in page.text
    assert ':tensorflow:serving:runtime_latency_count{model_name="default",API="Predict",runtime="TF1"}' in page.text
    assert ':tensorflow:serving:runtime_latency_count{model_name="default",API="Classify",runtime="TF1"}' in page.text
    assert ':tensorflow:serving:request_example_count_total{model="default"}' in page.text
    assert "_created" not in page.text


def test_cors_headers_and_unix_socket(server: ServerProcess, rest: httpx.Client) -> None:
    r = rest.get("/v1/models/default")
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["access-control-allow-methods"] == "POST, GET"
    sock = server.log_dir.parent / "grpc.sock"
    with grpc.insecure_channel(f"unix:{sock}") as channel:
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        req = predict_pb2.PredictRequest()
        req.model_spec.name = "default"
        to_tensor_proto(np.array([[2.0]], np.float32), req.inputs["x"])
        resp = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(req, timeout=30)
        assert list(resp.outputs["y"].float_val) == [3.0]


def test_rest_large_numeric_bodies_take_the_fast_path_with_identical_answers(rest: httpx.Client) -> None:
    # ~300 KB of numbers: wire.json parses such arrays with numpy instead of Python floats.
    x = np.random.default_rng(3).standard_normal((20000, 1)).astype(np.float32)
    expected = 0.5 * x + 2
    rows = rest.post("/v1/models/default:predict", content=wjson.dumps({"instances": x}))
    assert rows.status_code == 200, rows.text
    np.testing.assert_allclose(np.array(rows.json()["predictions"], np.float32), expected, rtol=1e-6)
    columns = rest.post("/v1/models/default:predict", content=wjson.dumps({"inputs": {"x": x}}))
    assert columns.status_code == 200, columns.text
    np.testing.assert_allclose(np.array(columns.json()["outputs"], np.float32), expected, rtol=1e-6)

    ragged = wjson.dumps({"instances": x}).replace(b"],[", b",", 1)
    answer = rest.post("/v1/models/default:predict", content=ragged)
    assert answer.status_code == 400
    assert "Expecting tensor size: 2 but got: 1" in answer.json()["error"]
