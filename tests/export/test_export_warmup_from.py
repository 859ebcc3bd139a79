"""``export_model(..., warmup_from=CAPTURE)``: warmup requests from captured traffic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tfship.capture import CaptureConfig, CaptureSink, predict_log
from tfship.errors import ExportError
from tfship.manifest import WARMUP_PATH


def _model():  # type: ignore[no-untyped-def]
    import keras

    keras.utils.set_random_seed(3)
    return keras.Sequential([keras.Input((4,), name="features"), keras.layers.Dense(3, name="probs")])


def _capture(prefix: str, model: str, batches: list[int], name: str = "features") -> None:
    rng = np.random.default_rng(0)
    with CaptureSink(CaptureConfig(prefix), model) as sink:
        for rows in batches:
            x = rng.normal(size=(rows, 4)).astype(np.float32)
            sink.record(predict_log(model, 1, "serving_default", {name: x}, {"probs": x[:, :3]}))


def test_warmup_from_a_capture_is_bounded_shapes_first_and_replays_at_load(tmp_path: Path) -> None:
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2
    from tfship.export import export_model
    from tfship.serving.runtime import Servable
    from tfship.serving.runtime.warmup import replay_warmup

    prefix = f"{tmp_path}/capture/"
    _capture(prefix, "clf", [1, 1, 8, 1, 8, 32, 1, 1])
    result = export_model(_model(), tmp_path / "models", "clf", warmup_from=[prefix], warmup_records=5)
    path = result.path / WARMUP_PATH
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(path))]
    rows = [log.predict_log.request.inputs["features"].tensor_shape.dim[0].size for log in logs]
    assert rows == [1, 8, 32, 1, 1]  # each shape once, then the others in capture order, 5 at most
    for log in logs:
        assert log.predict_log.request.model_spec.name == "clf"
        assert not log.predict_log.request.model_spec.HasField("version")
        assert not log.predict_log.HasField("response")  # requests only
    servable = Servable.load("clf", result.version, result.path)  # warmup runs at load
    try:
        assert replay_warmup(servable) == 5
    finally:
        servable.close()


def test_a_capture_of_another_signature_is_refused_before_publishing(tmp_path: Path) -> None:
    from tfship.export import export_model

    prefix = f"{tmp_path}/capture/"
    _capture(prefix, "clf", [2], name="pixels")
    with pytest.raises(ExportError, match=r"sends inputs \['pixels'\].*takes \['features'\]"):
        export_model(_model(), tmp_path / "models", "clf", warmup_from=[prefix])
    assert not (tmp_path / "models" / "clf" / "1").exists()


def test_no_record_of_the_model_is_an_error(tmp_path: Path) -> None:
    from tfship.export import export_model

    prefix = f"{tmp_path}/capture/"
    _capture(prefix, "other", [2])
    with pytest.raises(ExportError, match="no records of model 'clf'"):
        export_model(_model(), tmp_path / "models", "clf", warmup_from=[prefix])
