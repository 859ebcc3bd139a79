"""Capture in tfship-model-server (logging_config), end to end over gRPC and REST.

half_plus_two (TF Serving's test model: predict ``y = x/2 + 2``, classify_x_to_y, regress_x_to_y)
served from a base dir the tests add versions to. Every record must parse as TF Serving's own
``PredictionLog`` and name the version that really served its call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from model_server_process import ServerProcess, copy_version, launch, wait_until
from tensorflow_serving.apis import inference_pb2, model_management_pb2, prediction_log_pb2
from tfship.client import ClientConfig, connect
from tfship.client.replay import replay_capture
from tfship.serving.config.model_config import parse_model_config

from tfship.capture import CaptureConfig, read_capture, read_records
from tfship.capture.files import model_capture_files
from tfship.wire.tensor import to_ndarray

MODEL = "half"


def _logging(prefix: str, rate: float = 1.0, options: str = "") -> str:
    return (f'logging_config {{ sampling_config {{ sampling_rate: {rate} }} log_collector_config {{ '
            f'type: "tfrecord{options}" filename_prefix: "{prefix}" }} }}')


def _entry(name: str, base: Path, logging: str = "") -> str:
    return f'config {{ name: "{name}" base_path: "{base}" model_platform: "tensorflow" {logging} }}'


def _config_text(base: Path, logging: str = "", extra: str = "") -> str:
    return f"model_config_list {{ {_entry(MODEL, base, logging)} {extra} }}"


@pytest.fixture(scope="module")
def half_base(tmp_path_factory: pytest.TempPathFactory, tf_serving_testdata: Path) -> Path:
    base = tmp_path_factory.mktemp("models") / MODEL
    copy_version(tf_serving_testdata / "saved_model_half_plus_two_cpu" / "00000123", base, 1)
    return base


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, half_base: Path) -> Iterator[ServerProcess]:
    """One server for the module; each test switches capture on with a config reload (which is
    itself under test: the reload test checks on, off and a rejected config)."""
    work = tmp_path_factory.mktemp("capture-server")
    config = work / "models.config"
    config.write_text(_config_text(half_base))
    monitoring = work / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true path: "/metrics" }')
    running = launch(work / "server", f"--model_config_file={config}", f"--monitoring_config_file={monitoring}",
                     "--file_system_poll_wait_seconds=1", models=(MODEL,))
    yield running
    running.terminate()


def _reload(server: ServerProcess, text: str) -> None:
    request = model_management_pb2.ReloadConfigRequest()
    request.config.CopyFrom(parse_model_config(text))
    assert server.model_service.HandleReloadConfigRequest(request, timeout=120).status.error_code == 0


@pytest.fixture
def capture(server: ServerProcess, half_base: Path, tmp_path: Path) -> Iterator[Callable[..., str]]:
    """``capture(rate=1.0, options="")`` reloads the config with capture of ``half`` into a fresh
    prefix and returns it; capture is switched off again after the test."""

    def on(rate: float = 1.0, options: str = "", extra: str = "") -> str:
        prefix = f"{tmp_path}/capture/"
        _reload(server, _config_text(half_base, _logging(prefix, rate, options), extra))
        return prefix

    yield on
    _reload(server, _config_text(half_base))


def _records(prefix: str, model: str = MODEL) -> list[prediction_log_pb2.PredictionLog]:
    return [prediction_log_pb2.PredictionLog.FromString(data)
            for f in model_capture_files(prefix, model) for data in read_records(f.path)]


def _wait_records(prefix: str, count: int, model: str = MODEL) -> list[prediction_log_pb2.PredictionLog]:
    # the writer flushes after draining its queue: records appear shortly after the calls
    return wait_until(lambda: (r := _records(prefix, model)) and len(r) >= count and r, 10, f"{count} records")


def _counter(server: ServerProcess, series: str) -> float:
    """The value of one Prometheus series (``name{labels}``), 0 when it is not there yet."""
    import httpx

    page = httpx.get(f"{server.rest_url}/metrics", timeout=10).text
    found = [line.rsplit(" ", 1)[1] for line in page.splitlines() if line.startswith(series + " ")]
    return float(found[0]) if found else 0.0


WRITTEN = ':tfship:serving:capture_records_written{model_name="half"}'
DROPPED = ':tfship:serving:capture_records_dropped{model_name="half",reason="budget"}'


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_predict_classify_regress_are_captured_as_tf_serving_prediction_logs(
        server: ServerProcess, capture: Callable[..., str], transport: str) -> None:
    written = _counter(server, WRITTEN)
    prefix = capture()
    url = f"grpc://{server.grpc_address}" if transport == "grpc" else server.rest_url
    with connect(url) as client:
        for i in range(3):
            client.predict(MODEL, {"x": np.float32([[i], [i + 1]])})
        client.classify(MODEL, [{"x": 1.0}, {"x": 3.0}], signature="classify_x_to_y")
        client.regress(MODEL, [{"x": 2.0}], signature="regress_x_to_y")
    logs = _wait_records(prefix, 5)
    assert [log.WhichOneof("log_type") for log in logs] == ["predict_log"] * 3 + ["classify_log", "regress_log"]
    for log in logs:
        assert log.log_metadata.model_spec.name == MODEL and log.log_metadata.model_spec.version.value == 1
        assert log.log_metadata.sampling_config.sampling_rate == 1.0
    np.testing.assert_array_equal(to_ndarray(logs[2].predict_log.response.outputs["y"]), [[3.0], [3.5]])
    assert logs[3].log_metadata.model_spec.signature_name == "classify_x_to_y"
    assert [c.classes[0].score for c in logs[3].classify_log.response.result.classifications] == [2.5, 3.5]
    assert logs[4].regress_log.response.result.regressions[0].value == 3.0
    wait_until(lambda: _counter(server, WRITTEN) == written + 5, 10, "written counter")
    with connect(f"grpc://{server.grpc_address}") as client:  # what was captured replays identically
        report = replay_capture(client, MODEL, [prefix], version=1)
    assert report.ok and report.agreement == 1.0 and len(report.records) == 5


def test_multi_inference_is_captured(server: ServerProcess, capture: Callable[..., str]) -> None:
    import tensorflow as tf

    prefix = capture()
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (("regress_x_to_y", "regress"), ("classify_x_to_y", "classify")):
        task = request.tasks.add(method_name=f"tensorflow/serving/{method}")
        task.model_spec.name, task.model_spec.signature_name = MODEL, signature
    example = tf.train.Example()
    example.features.feature["x"].float_list.value.append(4.0)
    request.input.example_list.examples.append(example)
    server.prediction.MultiInference(request, timeout=30)
    (log,) = _wait_records(prefix, 1)
    multi = log.multi_inference_log
    assert [t.model_spec.signature_name for t in multi.request.tasks] == ["regress_x_to_y", "classify_x_to_y"]
    assert multi.response.results[0].regression_result.regressions[0].value == 4.0
    assert multi.response.results[1].classification_result.classifications[0].classes[0].score == 4.0


def test_records_name_the_version_that_served_across_a_hot_swap(
        server: ServerProcess, capture: Callable[..., str], tmp_path: Path, tf_serving_testdata: Path) -> None:
    source = tf_serving_testdata / "saved_model_half_plus_two_cpu" / "00000123"
    swap_base = tmp_path / "swap"
    copy_version(source, swap_base, 1)
    prefix = capture(extra=_entry("swap", swap_base, _logging(f"{tmp_path}/capture/")))
    wait_until(lambda: server.available_versions("swap") == {1}, 60, "swap v1")
    served: dict[float, int] = {}
    errors: list[BaseException] = []
    stop = threading.Event()

    def traffic() -> None:
        with connect(f"grpc://{server.grpc_address}") as client:
            i = 0
            while not stop.is_set() and i < 5000:
                try:
                    answer = client.predict_detailed("swap", {"x": np.float32([[i]])})
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)
                    return
                served[float(i)] = int(answer.version)  # type: ignore[arg-type]
                i += 1

    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        wait_until(lambda: len(served) >= 20, 30, "traffic on v1")
        copy_version(source, swap_base, 2)
        wait_until(lambda: list(served.values()).count(2) >= 20, 60, "traffic on v2")
    finally:
        stop.set()
        thread.join(30)
    assert not errors
    logs = _wait_records(prefix, len(served), model="swap")
    recorded = {float(to_ndarray(log.predict_log.request.inputs["x"])[0, 0]): log.log_metadata.model_spec.version.value
                for log in logs}
    assert recorded == served and set(served.values()) == {1, 2}


def test_rotation_and_a_too_small_budget_drop_and_count_while_no_request_fails(
        server: ServerProcess, capture: Callable[..., str]) -> None:
    written, dropped = _counter(server, WRITTEN), _counter(server, DROPPED)
    prefix = capture(options="?max_file_bytes=1KiB&max_total_bytes=3KiB")
    with connect(f"grpc://{server.grpc_address}") as client:
        for i in range(200):
            client.predict(MODEL, {"x": np.full((4, 1), i, np.float32)})  # any failure raises here
    wait_until(lambda: _counter(server, WRITTEN) - written + _counter(server, DROPPED) - dropped == 200, 10,
               "every sampled call written or dropped")
    files = model_capture_files(prefix, MODEL)
    assert len(files) >= 3 and all(f.path.stat().st_size <= 1024 for f in files)
    assert sum(f.path.stat().st_size for f in files) <= 3 * 1024
    assert _counter(server, DROPPED) - dropped > 100
    assert _counter(server, WRITTEN) - written == len(_records(prefix))


def test_sampling_a_tenth_captures_about_a_tenth(server: ServerProcess, capture: Callable[..., str]) -> None:
    written = _counter(server, WRITTEN)
    prefix = capture(rate=0.1)
    n = 800
    with connect(f"grpc://{server.grpc_address}") as client:
        for _ in range(n):
            client.predict(MODEL, {"x": np.float32([[1]])})
    # binomial(800, 0.1): mean 80, sd 8.5; 5 sd either side fails once in ~3.5 million runs
    count = wait_until(lambda: len(_records(prefix)), 10, "records")
    wait_until(lambda: _counter(server, WRITTEN) - written == len(_records(prefix)), 10, "counter")
    assert 38 <= len(_records(prefix)) <= 122, count


def test_a_config_reload_turns_capture_on_and_off(server: ServerProcess, capture: Callable[..., str],
                                                  half_base: Path) -> None:
    with connect(f"grpc://{server.grpc_address}") as client:
        client.predict(MODEL, {"x": np.float32([[1]])})
        prefix = capture()
        assert not _records(prefix)
        client.predict(MODEL, {"x": np.float32([[2]])})
        _wait_records(prefix, 1)
        _reload(server, _config_text(half_base))  # off
        client.predict(MODEL, {"x": np.float32([[3]])})
        client.predict(MODEL, {"x": np.float32([[4]])})
    logs = _records(prefix)  # the sink was closed (and flushed) by the reload that removed it
    assert [float(to_ndarray(log.predict_log.request.inputs["x"])[0, 0]) for log in logs] == [2.0]
    bad = model_management_pb2.ReloadConfigRequest()
    bad.config.CopyFrom(parse_model_config(_config_text(half_base, _logging(prefix, options="?nope=1"))))
    with pytest.raises(grpc.RpcError) as info:
        server.model_service.HandleReloadConfigRequest(bad, timeout=60)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "unknown option 'nope'" in info.value.details()


def test_config_file_polling_turns_capture_on(start_model_server: Any, tmp_path: Path, half_base: Path) -> None:
    prefix = f"{tmp_path}/capture/"
    config = tmp_path / "models.config"
    config.write_text(_config_text(half_base))
    own = start_model_server(f"--model_config_file={config}", "--model_config_file_poll_wait_seconds=1",
                             models=(MODEL,), rest=False)
    config.write_text(_config_text(half_base, _logging(prefix)))
    with connect(f"grpc://{own.grpc_address}") as client:
        def captured() -> bool:
            client.predict(MODEL, {"x": np.float32([[5]])})
            return bool(_records(prefix))

        wait_until(captured, 30, "capture switched on by the polled config")


def test_privacy_options_leave_inputs_or_responses_out(server: ServerProcess, capture: Callable[..., str]) -> None:
    prefix = capture(options="?requests_only=true&exclude_inputs=x")
    with connect(f"grpc://{server.grpc_address}") as client:
        client.predict(MODEL, {"x": np.float32([[1]])})
        client.regress(MODEL, [{"x": 2.0}], signature="regress_x_to_y")
    predict, regress = _wait_records(prefix, 2)
    assert not predict.predict_log.request.inputs and not predict.predict_log.HasField("response")
    assert not regress.regress_log.request.input.example_list.examples[0].features.feature
    assert not regress.regress_log.HasField("response")


def test_the_clients_capture_of_a_call_equals_the_servers(server: ServerProcess, capture: Callable[..., str],
                                                          tmp_path: Path) -> None:
    server_prefix, client_prefix = capture(), f"{tmp_path}/client/"
    config = ClientConfig(capture=CaptureConfig(client_prefix))
    with connect(f"grpc://{server.grpc_address}", config) as client:
        client.predict(MODEL, {"x": np.float32([[1], [7]])})
        client.predict(MODEL, {"x": np.float32([[3]])}, signature="serving_default")
    _wait_records(server_prefix, 2)
    ours, theirs = list(read_capture([client_prefix])), list(read_capture([server_prefix]))
    assert len(ours) == len(theirs) == 2
    for mine, served in zip(ours, theirs, strict=True):
        assert (mine.kind, mine.model, mine.version, mine.signature) == (
            served.kind, served.model, served.version, served.signature)
        assert mine.outputs is not None and served.outputs is not None
        assert mine.inputs.keys() == served.inputs.keys() and mine.outputs.keys() == served.outputs.keys()
        for name in mine.inputs:
            np.testing.assert_array_equal(mine.inputs[name], served.inputs[name])
        for name in mine.outputs:
            np.testing.assert_array_equal(mine.outputs[name], served.outputs[name])
