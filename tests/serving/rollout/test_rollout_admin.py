"""The rollout admin on a running tfship-model-server, over gRPC and REST: set at run time, read back,
validated with the right codes; pinned and labelled requests keep TF Serving's answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from tensorflow_serving.apis import predict_pb2

from tfship.rollout_protocol import GET_METHOD, REST_PREFIX, SET_METHOD
from tfship.wire.tensor import to_tensor_proto

TWO = "saved_model_half_plus_two_2_versions"


@pytest.fixture
def server(tmp_path: Path, tf_serving_testdata: Path, start_model_server: Any) -> Any:
    config = tmp_path / "models.config"
    config.write_text(f"""
model_config_list {{ config {{
    name: "two" base_path: "{tf_serving_testdata / TWO}" model_platform: "tensorflow"
    model_version_policy {{ all {{}} }}
    version_labels {{ key: "stable" value: 123 }}
    version_labels {{ key: "canary" value: 124 }}
}} }}
""")
    return start_model_server(f"--model_config_file={config}", "--allow_version_labels_for_unavailable_models=true",
                              models=("two",))


def admin(server: Any, method: str, body: dict[str, Any]) -> dict[str, Any]:
    with grpc.insecure_channel(server.grpc_address) as channel:
        return json.loads(channel.unary_unary(method)(json.dumps(body).encode(), timeout=10))


def predict_version(server: Any, **spec: Any) -> int:
    import numpy as np

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "two"
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            request.model_spec.version_label = value
    to_tensor_proto(np.array([[1.0]], np.float32), request.inputs["x"])
    return server.prediction.Predict(request, timeout=10).model_spec.version.value


def test_weights_set_over_rest_route_grpc_requests_and_read_back_on_both(server: Any) -> None:
    # no rollout: TF Serving's default, the highest version
    assert {predict_version(server) for _ in range(10)} == {124}
    r = httpx.put(f"{server.rest_url}{REST_PREFIX}/two", json={"canary_percent": 0, "shadow_percent": 0, "step": "a"})
    assert r.status_code == 200 and r.json()["models"]["two"]["step"] == "a"
    assert {predict_version(server) for _ in range(20)} == {123}  # under rollout: stable
    # pinned and labelled: exactly as asked, whatever the weights
    assert predict_version(server, version=124) == 124 and predict_version(server, label="canary") == 124
    state = admin(server, SET_METHOD, {"model": "two", "canary_percent": 100, "step": "b"})["models"]["two"]
    assert (state["stable"], state["candidate"], state["canary_percent"]) == (123, 124, 100)
    assert state["loaded"] == [123, 124]
    assert {predict_version(server) for _ in range(20)} == {124}
    assert predict_version(server, label="stable") == 123
    rest = httpx.get(f"{server.rest_url}{REST_PREFIX}/two").json()["models"]["two"]
    assert rest["step"] == "b" and rest["window"]["served"]["124"]["count"] == 20
    assert admin(server, GET_METHOD, {})["models"].keys() == {"two"}
    # REST predicts are routed too
    body = httpx.post(f"{server.rest_url}/v1/models/two:predict", json={"instances": [[1.0]]}).json()
    assert body == {"predictions": [[2.5]]}  # half_plus_two (both versions compute it)
    assert admin(server, GET_METHOD, {"model": "two"})["models"]["two"]["window"]["served"]["124"]["count"] == 21
    admin(server, SET_METHOD, {"model": "two", "clear": True})
    assert admin(server, GET_METHOD, {})["models"] == {}


def test_bad_admin_requests_get_client_error_codes(server: Any) -> None:
    with pytest.raises(grpc.RpcError) as info:
        admin(server, SET_METHOD, {"model": "two", "canary_percent": 250})
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "canary_percent must be a number from 0 to 100" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        admin(server, SET_METHOD, {"model": "nope"})
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    r = httpx.put(f"{server.rest_url}{REST_PREFIX}/two", content=b"{not json")
    assert r.status_code == 400 and "not JSON" in r.json()["error"]
    assert httpx.delete(f"{server.rest_url}{REST_PREFIX}/two").status_code == 405
    assert httpx.get(f"{server.rest_url}{REST_PREFIX}/a/b").status_code == 404
