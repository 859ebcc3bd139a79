"""Warmup replay of assets.extra/tf_serving_warmup_requests (TF Serving compat spec §9)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework.tensor_pb2 import TensorProto
from tensorflow_serving.apis import prediction_log_pb2
from tfship.serving.runtime import LoadOptions, Servable
from tfship.serving.runtime.warmup import replay_warmup, warmup_path

from tfship.errors import DataLossError, InvalidArgumentError, UnimplementedError
from tfship.wire.tensor import to_tensor_proto


def predict_log(x, signature: str = "", alias: str = "x") -> prediction_log_pb2.PredictionLog:
    log = prediction_log_pb2.PredictionLog()
    request = log.predict_log.request
    request.model_spec.name = "half_plus_two"
    request.model_spec.signature_name = signature
    request.inputs[alias].CopyFrom(to_tensor_proto(np.asarray(x, np.float32), TensorProto()))
    return log


def write_records(version_dir: Path, records: list[bytes]) -> Path:
    path = warmup_path(version_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
    return path


def mixed_logs(example) -> list[prediction_log_pb2.PredictionLog]:
    classify = prediction_log_pb2.PredictionLog()
    classify.classify_log.request.model_spec.signature_name = "classify_x_to_y"
    classify.classify_log.request.input.example_list.examples.add().ParseFromString(example(x=1.0))
    regress = prediction_log_pb2.PredictionLog()
    regress.regress_log.request.model_spec.signature_name = "regress_x_to_y"
    regress.regress_log.request.input.example_list.examples.add().ParseFromString(example(x=1.0))
    multi = prediction_log_pb2.PredictionLog()
    task = multi.multi_inference_log.request.tasks.add()
    task.model_spec.signature_name = "regress_x_to_y2"
    task.method_name = "tensorflow/serving/regress"
    multi.multi_inference_log.request.input.example_list.examples.add().ParseFromString(example(x=1.0))
    return [predict_log([[1.0], [2.0]]), classify, regress, multi]


def test_warmup_replays_every_log_type(writable_half_plus_two, example):
    write_records(writable_half_plus_two, [log.SerializeToString() for log in mixed_logs(example)])
    servable = Servable.load("half_plus_two", 123, writable_half_plus_two)  # warmup enabled by default
    try:
        assert replay_warmup(servable) == 4
        assert replay_warmup(servable, iterations=3) == 4
        np.testing.assert_array_equal(servable.predict("", {"x": np.float32([[2]])})["y"], np.float32([[3]]))
    finally:
        servable.close()


def test_missing_or_empty_warmup_file_is_fine(writable_half_plus_two):
    servable = Servable.load("half_plus_two", 123, writable_half_plus_two)
    assert replay_warmup(servable) == 0
    write_records(writable_half_plus_two, [])
    assert replay_warmup(servable) == 0
    servable.close()


def test_failing_warmup_request_fails_the_load(writable_half_plus_two):
    write_records(writable_half_plus_two, [predict_log([[1.0]], alias="q").SerializeToString()])
    with pytest.raises(InvalidArgumentError, match="input tensor alias not found in signature: q"):
        Servable.load("half_plus_two", 123, writable_half_plus_two)
    # with warmup disabled the same version loads
    Servable.load("half_plus_two", 123, writable_half_plus_two, LoadOptions(enable_warmup=False)).close()


def test_not_tfrecord_is_data_loss(writable_half_plus_two):
    path = warmup_path(writable_half_plus_two)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"".join(predict_log([[1.0]]).SerializeToString() for _ in range(10)))
    with pytest.raises(DataLossError, match="Please verify your warmup data is in TFRecord format"):
        Servable.load("half_plus_two", 123, writable_half_plus_two)


def test_record_that_is_not_a_prediction_log(writable_half_plus_two):
    write_records(writable_half_plus_two, [b"\xff\xff\xff\xff not a proto"])
    with pytest.raises(InvalidArgumentError, match="Failed to parse warmup record"):
        Servable.load("half_plus_two", 123, writable_half_plus_two)


def test_too_many_records(writable_half_plus_two):
    path = write_records(writable_half_plus_two, [predict_log([[1.0]]).SerializeToString()] * 1001)
    with pytest.raises(InvalidArgumentError) as err:
        Servable.load("half_plus_two", 123, writable_half_plus_two)
    assert f"Number of warmup records exceeds the maximum (1000) at {path}" in err.value.message


@pytest.mark.parametrize("log_type, number", [("session_run_log", 5), ("predict_streamed_log", 7)])
def test_unsupported_log_types(writable_half_plus_two, log_type, number):
    log = prediction_log_pb2.PredictionLog()
    getattr(log, log_type).SetInParent()
    write_records(writable_half_plus_two, [log.SerializeToString()])
    with pytest.raises(UnimplementedError, match=f"Unsupported log_type for warmup: {number}"):
        Servable.load("half_plus_two", 123, writable_half_plus_two)


def test_load_reports_warmup_runtime_and_example_counts_to_its_hooks(writable_half_plus_two, example):
    write_records(writable_half_plus_two, [log.SerializeToString() for log in mixed_logs(example)])
    warmups: list[str] = []
    runs: list[str] = []
    examples: list[int] = []
    options = LoadOptions(on_warmup=lambda status, seconds: warmups.append(status),
                          on_run=lambda api, seconds: runs.append(api), on_examples=examples.append)
    servable = Servable.load("half_plus_two", 123, writable_half_plus_two, options)
    try:
        assert warmups == ["OK"]
        assert runs == ["Predict", "Classify", "Regress", "MultiInference"]
        assert examples == [1, 1, 1]
    finally:
        servable.close()


def test_a_warmup_file_that_is_not_tfrecord_is_reported_as_data_loss(writable_half_plus_two):
    path = warmup_path(writable_half_plus_two)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a TFRecord file at all")
    warmups: list[str] = []
    with pytest.raises(DataLossError):
        Servable.load("half_plus_two", 123, writable_half_plus_two,
                      LoadOptions(on_warmup=lambda status, seconds: warmups.append(status)))
    assert len(warmups) == 1 and warmups[0].startswith("DATA_LOSS: ")
