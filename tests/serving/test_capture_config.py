"""logging_config -> ServerCapture: parsing, applying, sampling and the records it writes (no server)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tensorflow_serving.apis import prediction_log_pb2
from tfship.serving.capture import ServerCapture, capture_configs
from tfship.serving.config.model_config import parse_model_config
from tfship.serving.metrics import ServerMetrics

from tfship.capture import read_records
from tfship.capture.files import model_capture_files
from tfship.errors import InvalidArgumentError


def _config(tmp_path: Path, logging: str) -> Any:
    return parse_model_config(f"""model_config_list {{
  config {{ name: "m" base_path: "/models/m" model_platform: "tensorflow" {logging} }}
  config {{ name: "quiet" base_path: "/models/quiet" model_platform: "tensorflow" }}
}}""")


@dataclass(frozen=True)
class Record:  # the fields of the data plane's InferenceRecord that capture reads
    api: str
    model: str
    version: int | None
    signature_name: str
    inputs: Any
    outputs: Any
    error: Any = None


def test_logging_config_is_read_per_model(tmp_path: Path) -> None:
    config = _config(tmp_path, f"""logging_config {{
      sampling_config {{ sampling_rate: 0.25 }}
      log_collector_config {{ type: "tfrecord?exclude_inputs=ssn&max_total_bytes=10MiB"
                             filename_prefix: "{tmp_path}/cap/" }} }}""")
    configs = capture_configs(config)
    assert list(configs) == ["m"]
    assert configs["m"].sampling_rate == 0.25 and configs["m"].exclude_inputs == {"ssn"}
    assert configs["m"].max_total_bytes == 10 * 2**20


def test_a_bad_logging_config_names_the_model(tmp_path: Path) -> None:
    config = _config(tmp_path, """logging_config { log_collector_config { type: "kafka" filename_prefix: "/x" } }""")
    with pytest.raises(InvalidArgumentError, match="logging_config of model m: .*'tfrecord'"):
        capture_configs(config)


def test_records_parse_as_tf_serving_prediction_logs_and_counters_count(tmp_path: Path) -> None:
    metrics = ServerMetrics()
    capture = ServerCapture(metrics)
    prefix = f"{tmp_path}/cap/"
    capture.apply(capture_configs(_config(tmp_path, f"""logging_config {{
      sampling_config {{ sampling_rate: 1.0 }}
      log_collector_config {{ type: "tfrecord?exclude_inputs=secret" filename_prefix: "{prefix}" }} }}""")))
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    capture.observe(Record("predict", "m", 7, "serving_default", {"x": x, "secret": x}, {"y": x + 1}))
    capture.observe(Record("predict", "quiet", 1, "serving_default", {"x": x}, {"y": x}))  # not captured
    capture.observe(Record("predict", "m", 7, "serving_default", {"x": x}, None, error=RuntimeError()))
    sink = capture.sink("m")
    assert sink is not None and sink.flush()
    (data,) = [d for f in model_capture_files(prefix, "m") for d in read_records(f.path)]
    log = prediction_log_pb2.PredictionLog.FromString(data)
    assert log.log_metadata.model_spec.name == "m" and log.log_metadata.model_spec.version.value == 7
    assert log.log_metadata.sampling_config.sampling_rate == 1.0
    assert set(log.predict_log.request.inputs) == {"x"}  # privacy: secret left out
    assert log.predict_log.response.model_spec.version.value == 7
    assert b':tfship:serving:capture_records_written{model_name="m"} 1.0' in metrics.exposition()
    capture.apply({})  # a reload without logging_config turns capture off
    assert capture.sink("m") is None and sink.stats.written == 1


def test_sampling_draws_per_call(tmp_path: Path) -> None:
    capture = ServerCapture()
    capture.apply(capture_configs(_config(tmp_path, f"""logging_config {{
      sampling_config {{ sampling_rate: 0.1 }}
      log_collector_config {{ type: "tfrecord" filename_prefix: "{tmp_path}/c" }} }}""")))
    n = 4000
    for _ in range(n):
        capture.observe(Record("regress", "m", 1, "regress", [b""], np.zeros(1, np.float32)))
    sink = capture.sink("m")
    assert sink is not None and sink.flush()
    # binomial(4000, 0.1): mean 400, sd 19; 5 sd either side fails once in ~3.5 million runs
    assert 305 <= sink.stats.written <= 495
    capture.close()
