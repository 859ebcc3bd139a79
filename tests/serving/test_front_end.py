"""The asyncio front end: requests that need no model never wait behind model runs.

The server answers gRPC and REST from one event loop and runs models on a bounded executor
(``--grpc_max_threads`` / ``--rest_api_num_threads`` size it). Here that executor has three
threads and two of them are held inside model runs (the gated model's ``gated`` signature waits
until ``open`` is called); status and metadata must still answer at once (the thread-per-request
server they replace needed a free thread for them), and the runs finish once the gate opens.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
from model_server_process import wait_until
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2

from tfship.wire.tensor import to_ndarray, to_tensor_proto


def predict_request(signature: str, alias: str, values: list[float]) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "gated"
    request.model_spec.signature_name = signature
    to_tensor_proto(np.float32(values), request.inputs[alias])
    return request


def grpc_in_flight(server) -> float:
    text = httpx.get(f"{server.rest_url}/metrics", timeout=5).text
    gauge = ':tfship:serving:requests_in_flight{entrypoint="GRPC"}'
    (line,) = [row for row in text.splitlines() if row.startswith(gauge)]
    return float(line.rsplit(" ", 1)[1])


def test_status_and_metadata_answer_while_model_runs_block(start_model_server, gated_model_dir, tmp_path):
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true path: "/metrics" }\n')
    server = start_model_server(
        "--model_name=gated", f"--model_base_path={gated_model_dir.parent}",
        "--grpc_max_threads=3", "--rest_api_num_threads=3", f"--monitoring_config_file={monitoring}",
        models=("gated",),
    )
    with ThreadPoolExecutor(2) as pool:
        held = [pool.submit(server.prediction.Predict, predict_request("gated", "x", [float(i)]),
                            timeout=60) for i in range(2)]
        wait_until(lambda: grpc_in_flight(server) == 2, 30, "two gated runs in flight")
        for _ in range(20):
            assert server.status("gated").model_version_status[0].state == 30  # AVAILABLE
            metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
            metadata.model_spec.name = "gated"
            assert server.prediction.GetModelMetadata(metadata, timeout=5).model_spec.version.value == 1
            rest = httpx.get(f"{server.rest_url}/v1/models/gated", timeout=5)
            assert rest.json()["model_version_status"][0]["state"] == "AVAILABLE"
        assert not any(f.done() for f in held)
        opened = server.prediction.Predict(predict_request("open", "v", [0.0, 0.0]), timeout=60)
        assert to_ndarray(opened.outputs["opened"]).tolist() == [0.0, 0.0]
        outputs = sorted(to_ndarray(f.result(timeout=60).outputs["y"]).tolist()[0] for f in held)
    assert outputs == [0.0, 1.0]
