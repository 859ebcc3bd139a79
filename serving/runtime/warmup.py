"""SavedModel warmup: replay ``assets.extra/tf_serving_warmup_requests`` after loading (TF Serving compat spec §9).

The file is a TFRecord of serialized ``tensorflow.serving.PredictionLog``; each record's request
runs against the freshly loaded servable (responses are ignored). Any failure fails the load, with
TF Serving's codes and messages (saved_model_warmup_util.cc).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfship.errors import (
    DataLossError,
    InvalidArgumentError,
    ServingError,
    UnimplementedError,
    error_for_code,
)

if TYPE_CHECKING:
    from .servable import Servable

__all__ = ["WARMUP_FILE", "MAX_WARMUP_RECORDS", "replay_warmup", "warmup_path"]

log = logging.getLogger(__name__)

WARMUP_FILE = "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000
_FORMAT_HINT = ". Please verify your warmup data is in TFRecord format."


def warmup_path(version_dir: Path) -> Path:
    """Where TF Serving looks for a version's warmup requests."""
    return Path(version_dir) / "assets.extra" / WARMUP_FILE


def _read_records(path: Path) -> Any:
    import tensorflow as tf

    try:
        for record in tf.data.TFRecordDataset(str(path)):
            yield record.numpy()
    except tf.errors.DataLossError as exc:
        raise DataLossError(f"{exc.message}{_FORMAT_HINT} ({path})") from exc
    except tf.errors.OpError as exc:
        raise error_for_code(exc.error_code, f"{exc.message} ({path})") from exc


def _run_record(servable: Servable, log_entry: Any) -> None:
    from tfship.wire.tensor import to_ndarray

    from .examples import serialized_examples

    kind = log_entry.WhichOneof("log_type")
    if kind == "predict_log":
        request = log_entry.predict_log.request
        inputs = {alias: to_ndarray(proto) for alias, proto in request.inputs.items()}
        servable.predict(
            request.model_spec.signature_name, inputs, tuple(request.output_filter)
        )
    elif kind == "classify_log":
        request = log_entry.classify_log.request
        servable.classify(request.model_spec.signature_name, serialized_examples(request.input))
    elif kind == "regress_log":
        request = log_entry.regress_log.request
        servable.regress(request.model_spec.signature_name, serialized_examples(request.input))
    elif kind == "multi_inference_log":
        request = log_entry.multi_inference_log.request
        tasks = [(t.model_spec.signature_name, t.method_name) for t in request.tasks]
        servable.multi_inference(tasks, serialized_examples(request.input))
    else:
        number = log_entry.DESCRIPTOR.fields_by_name[kind].number if kind else 0
        raise UnimplementedError(f"Unsupported log_type for warmup: {number}")


def replay_warmup(
    servable: Servable, iterations: int = 0, on_done: Callable[[str, float], None] | None = None
) -> int:
    """Replay the warmup file of ``servable.path``; return the number of records replayed.

    ``iterations`` > 0 runs each request that many times (ModelWarmupOptions
    ``num_request_iterations``), else once. Missing or empty file: nothing to do.
    ``on_done(status, seconds)`` is told how the replay ended, where upstream records
    model_warmup_latency: "OK", or the error of a file that is not TFRecord.
    """
    path = warmup_path(servable.path)
    if not path.is_file():
        return 0
    start = time.monotonic()
    try:
        count = _replay(servable, path, iterations)
    except DataLossError as exc:
        if on_done is not None:
            on_done(f"DATA_LOSS: {exc.message}", time.monotonic() - start)
        raise
    seconds = time.monotonic() - start
    if on_done is not None:
        on_done("OK", seconds)
    log.info(
        "Finished reading warmup data for model at %s. Number of warmup records read: %d. "
        "Elapsed time (microseconds): %d.",
        path, count, int(seconds * 1e6),
    )
    return count


def _replay(servable: Servable, path: Path, iterations: int) -> int:
    from tensorflow_serving.apis import prediction_log_pb2

    repeat = max(1, iterations)
    count = 0
    for record in _read_records(path):
        count += 1
        if count > MAX_WARMUP_RECORDS:
            raise InvalidArgumentError(
                f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS}) at {path}"
            )
        entry = prediction_log_pb2.PredictionLog()
        try:
            entry.ParseFromString(record)
        except Exception as exc:  # protobuf's DecodeError and friends
            raise InvalidArgumentError(
                f"Failed to parse warmup record: {record[:64]!r} from {path}"
            ) from exc
        for _ in range(repeat):
            try:
                _run_record(servable, entry)
            except ServingError as exc:
                exc.message = f"{exc.message} (warmup record {count} of {path})"
                exc.args = (exc.message,)
                raise
    return count
