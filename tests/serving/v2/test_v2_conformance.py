"""Conformance of the V2 front ends with clients nobody here wrote: tritonclient (http, grpc) and
kserve's InferenceRESTClient / InferenceGRPCClient, each run in the cached third-party venv.

Every answer must equal the in-process Keras model (allclose 1e-5), and errors must carry V2's
codes: 404 / NOT_FOUND for an unknown model, 400 / INVALID_ARGUMENT for a wrong dtype or shape.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

RUNNER = Path(__file__).with_name("v2_clients.py")
CLIENTS = ["triton-http", "triton-grpc", "kserve-rest", "kserve-grpc"]
STRINGS = ["plain", "ünïcödé", "", "mIxEd 42"]
X = np.random.default_rng(11).normal(size=(5, 4)).astype(np.float32)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def answers(v2_clients_python: Path, v2_server: Any) -> dict[str, dict[str, Any]]:
    host = v2_server.host
    plan = {"http": f"{host}:{v2_server.rest_port}", "grpc": f"{host}:{v2_server.grpc_port}",
            "model": "keras", "input": "features", "output": "probs", "x": X.tolist(),
            "strings_model": "strings", "strings": STRINGS}
    out = {}
    for client in CLIENTS:
        proc = subprocess.run([str(v2_clients_python), str(RUNNER), client], input=json.dumps(plan),
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{client}:\n{proc.stderr[-3000:]}"
        out[client] = json.loads(proc.stdout)
    return out


def _array(result: Any) -> np.ndarray:
    assert isinstance(result, dict) and "error" not in result, result
    return np.asarray(result["data"], dtype=result["dtype"]).reshape(result["shape"])


@pytest.mark.parametrize("client", CLIENTS)
def test_server_and_model_health(answers: dict[str, Any], client: str) -> None:
    got = answers[client]
    assert got["server_live"] is True and got["server_ready"] is True and got["model_ready"] is True


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("mode", ["binary", "json"])
def test_infer_equals_the_in_process_keras_model(answers: dict[str, Any], keras_model: Any, client: str,
                                                  mode: str) -> None:
    result = answers[client][f"infer_{mode}"]
    if client.startswith("kserve"):
        assert result["id"] == "conformance" and result["model_name"] == "keras"
        result = result["output"]
    got = _array(result)
    assert got.dtype == np.float32 and got.shape == (5, 3)
    np.testing.assert_allclose(got, np.asarray(keras_model(X)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("client", ["triton-http", "triton-grpc"])
@pytest.mark.parametrize("mode", ["binary", "json"])
def test_string_tensors_round_trip(answers: dict[str, Any], client: str, mode: str) -> None:
    result = answers[client][f"strings_{mode}"]
    assert "error" not in result, result
    assert result["upper"] == [s.encode().upper().decode() for s in STRINGS]  # TF upper-cases ASCII only
    assert _array(result["length"]).tolist() == [len(s.encode()) for s in STRINGS]


@pytest.mark.parametrize("client", ["triton-http", "triton-grpc"])
def test_metadata_describes_the_signature_with_variable_batch(answers: dict[str, Any], client: str) -> None:
    meta = answers[client]["metadata"]
    assert meta["name"] == "keras" and meta["versions"] == ["1", "2"]
    assert meta["platform"] == "tensorflow_savedmodel"
    assert [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in meta["inputs"]] == [
        ("features", "FP32", [-1, 4])]
    assert [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in meta["outputs"]] == [
        ("probs", "FP32", [-1, 3])]
    server = answers[client]["server_metadata"]
    assert server["name"] == "tfship-model-server" and "binary_tensor_data" in server["extensions"]


EXPECTED_CODES = {
    "unknown_model": {"http": "404", "grpc": "NOT_FOUND"},
    "wrong_dtype": {"http": "400", "grpc": "INVALID_ARGUMENT"},
    "wrong_shape": {"http": "400", "grpc": "INVALID_ARGUMENT"},
}


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("case", sorted(EXPECTED_CODES))
def test_client_mistakes_get_v2_error_codes(answers: dict[str, Any], client: str, case: str) -> None:
    error = answers[client][case].get("error")
    assert error is not None, answers[client][case]
    transport = "grpc" if client.endswith("grpc") else "http"
    assert error["code"].removeprefix("StatusCode.") == EXPECTED_CODES[case][transport]
    needle = {"unknown_model": "no_such_model", "wrong_dtype": "float", "wrong_shape": "[2,7]"}[case]
    assert needle in error["message"]


def test_unknown_model_is_not_ready(answers: dict[str, Any]) -> None:
    assert answers["triton-http"]["unknown_model_ready"] is False  # a 404 is "not ready" to tritonclient
    assert answers["triton-grpc"]["unknown_model_ready"]["error"]["code"] == "StatusCode.NOT_FOUND"
