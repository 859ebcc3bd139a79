"""Process behaviour of tfship-model-server: flags, start failures, SIGTERM drain (TF Serving compat spec §1)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
from model_server_process import wait_until
from tensorflow_serving.apis import predict_pb2

from tfship.wire.tensor import to_ndarray, to_tensor_proto


def test_flag_errors_print_usage_and_exit_255(run_model_server: Any) -> None:
    result = run_model_server("--port=abc", timeout=60)
    assert result.returncode == 255
    assert "--rest_api_port=0" in result.stdout and "--model_base_path" in result.stdout
    assert run_model_server("--help", timeout=60).returncode == 255


def test_version_flag(run_model_server: Any) -> None:
    result = run_model_server("--version", timeout=60)
    assert result.returncode == 0
    assert "TensorFlow ModelServer:" in result.stdout and "TensorFlow Library:" in result.stdout


def test_missing_model_flags_fail_start(run_model_server: Any) -> None:
    result = run_model_server("--port=1", timeout=60)
    assert result.returncode == 255
    assert result.stdout.startswith("Failed to start server. Error: INVALID_ARGUMENT: ")
    assert "model_base_path and server_options.model_config_file are empty" in result.stdout


def test_bad_model_config_fails_like_upstream(run_model_server: Any, tf_serving_testdata: Path) -> None:
    path = tf_serving_testdata / "bad_model_config.txt"
    result = run_model_server("--port=1", f"--model_config_file={path}", timeout=90)
    assert result.returncode == 255
    assert "Error parsing text-format tensorflow.serving.ModelServerConfig" in result.stderr
    assert (f"Failed to start server. Error: INVALID_ARGUMENT: Invalid protobuf file: '{path}'"
            in result.stdout)


def test_bad_model_fails_start_with_load_error(run_model_server: Any, tf_serving_testdata: Path) -> None:
    result = run_model_server(
        "--port=1", "--model_name=bad", f"--model_base_path={tf_serving_testdata / 'bad_half_plus_two'}",
        "--max_num_load_retries=1", "--load_retry_interval_micros=1000", timeout=120,
    )
    assert result.returncode == 255
    assert ("Failed to start server. Error: UNKNOWN: 1 servable(s) did not become available: "
            "{{{name: bad version: 123} due to error: UNIMPLEMENTED: ") in result.stdout
    assert "Session Bundle is deprecated and removed." in result.stdout
    assert result.stderr.count("Loading servable version {name: bad version: 123}") == 2  # 1 retry


def test_config_validation_fails_start(run_model_server: Any, tmp_path: Path, tf_serving_testdata: Path) -> None:
    relative = tmp_path / "relative.config"
    relative.write_text('model_config_list { config { name: "m" base_path: "models/m" model_platform: "tensorflow" } }')
    result = run_model_server("--port=1", f"--model_config_file={relative}", timeout=90)
    assert result.returncode == 255
    assert "INVALID_ARGUMENT: Expected model m to have an absolute path or URI" in result.stdout
    labels = tmp_path / "labels.config"
    labels.write_text(f"""model_config_list {{ config {{
        name: "m" base_path: "{tf_serving_testdata / 'saved_model_half_plus_two_cpu'}" model_platform: "tensorflow"
        version_labels {{ key: "stable" value: 123 }} }} }}""")
    result = run_model_server("--port=1", f"--model_config_file={labels}", timeout=90)
    assert result.returncode == 255
    assert "FAILED_PRECONDITION" in result.stdout
    assert "not currently available for inference" in result.stdout


def test_sigterm_drains_in_flight_requests_and_exits_0(
    start_model_server: Any, tmp_path: Path, tf_serving_testdata: Path
) -> None:
    # A 2 s batch timeout keeps a lone request in flight long enough to SIGTERM in the middle of it.
    batching = tmp_path / "batching.config"
    batching.write_text("max_batch_size { value: 1000 } batch_timeout_micros { value: 2000000 }")
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true path: "/metrics" }')
    server = start_model_server(
        "--model_name=half", f"--model_base_path={tf_serving_testdata / 'saved_model_half_plus_two_cpu'}",
        "--enable_batching", f"--batching_parameters_file={batching}",
        f"--monitoring_config_file={monitoring}", "--unknown_flag_is_only_a_warning=1",
        "--enable_serialization_as_tensor_content",
        models=("half",),
    )
    stdout = (server.log_dir / "stdout").read_text()
    assert stdout.startswith("unknown argument: --unknown_flag_is_only_a_warning=1\n")
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "half"
    to_tensor_proto(np.array([[1.0], [2.0]], np.float32), req.inputs["x"])
    results: dict[str, Any] = {}

    def call() -> None:
        try:
            y = server.prediction.Predict(req, timeout=60).outputs["y"]
            assert y.tensor_content and not y.float_val  # --enable_serialization_as_tensor_content
            results["grpc"] = to_ndarray(y).ravel().tolist()
        except grpc.RpcError as exc:
            results["grpc"] = exc

    def rest_call() -> None:
        try:
            r = httpx.post(f"{server.rest_url}/v1/models/half:predict", json={"instances": [[3.0]]},
                           timeout=60)
            results["rest"] = (r.status_code, r.json())
        except httpx.HTTPError as exc:
            results["rest"] = exc

    threads = [threading.Thread(target=call), threading.Thread(target=rest_call)]
    for t in threads:
        t.start()

    def both_in_flight() -> bool:
        page = httpx.get(f"{server.rest_url}/metrics", timeout=10).text
        lines = [ln for ln in page.splitlines() if ln.startswith(":tfship:serving:requests_in_flight{")]
        counts = {ln.split('"')[1]: float(ln.split()[-1]) for ln in lines}
        return counts.get("GRPC", 0) >= 1 and counts.get("REST", 0) >= 1

    wait_until(both_in_flight, 30, "requests in flight")
    server.proc.send_signal(signal.SIGTERM)
    rc = server.proc.wait(60)
    for t in threads:
        t.join(60)
    assert rc == 0, server.output()
    assert results["grpc"] == [2.5, 3.0]
    assert results["rest"] == (200, {"predictions": [[3.5]]})


def test_health_service_and_method_name_check(start_model_server: Any, tf_serving_testdata: Path) -> None:
    from tensorflow.core.example import example_pb2
    from tensorflow_serving.apis import regression_pb2

    server = start_model_server(
        "--model_name=tf2", f"--model_base_path={tf_serving_testdata / 'saved_model_half_plus_two_tf2_cpu'}",
        "--enable_grpc_healthcheck_service", "--enable_signature_method_name_check", models=("tf2",),
    )
    check = server.channel.unary_unary("/grpc.health.v1.Health/Check")
    assert check(b"", timeout=10) == b"\x08\x01"  # SERVING
    for name in (b"ModelService", b"PredictionService"):  # upstream's (short) names
        assert check(bytes([0x0A, len(name)]) + name, timeout=10) == b"\x08\x01"
    name = b"tensorflow.serving.PredictionService"
    try:
        check(bytes([0x0A, len(name)]) + name, timeout=10)
        raise AssertionError("a service name TF Serving does not register must be NOT_FOUND")
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.NOT_FOUND
    # TF2 signatures all say tensorflow/serving/predict: regress is refused with the check on
    req = regression_pb2.RegressionRequest()
    req.model_spec.name = "tf2"
    req.model_spec.signature_name = "regress_x_to_y"
    ex = example_pb2.Example()
    ex.features.feature["x"].float_list.value.append(2.0)
    req.input.example_list.examples.add().CopyFrom(ex)
    try:
        server.prediction.Regress(req, timeout=30)
        raise AssertionError("Regress should fail with --enable_signature_method_name_check")
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "Expected regression signature method_name to be tensorflow/serving/regress" in exc.details()
    r = httpx.post(f"{server.rest_url}/v1/models/tf2:predict", json={"instances": [2.0]}, timeout=30)
    assert r.json() == {"predictions": [3.0]}
