"""Write ``assets.extra/tf_serving_warmup_requests``: the requests TF Serving replays at load.

Format (TF Serving compat spec §9, TF Serving's saved_model_warmup): a TFRecord file whose records are
serialized ``tensorflow.serving.PredictionLog`` with ``predict_log.request`` set. Requests are
built from the sample inputs: one with the whole sample batch and one with a single sample, so
both the batched and the batch-of-one code paths are warm.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfship.capture.records import CapturedCall
from tfship.errors import ExportError
from tfship.manifest import Signature
from tfship.wire.tensor import to_tensor_proto

#: TF Serving reads at most this many warmup records (saved_model_warmup_util.cc).
MAX_WARMUP_RECORDS = 1000

__all__ = ["warmup_batches", "write_warmup_requests", "read_warmup_requests", "select_warmup_calls",
           "write_warmup_from_capture", "DEFAULT_WARMUP_RECORDS"]

#: How many captured requests become warmup records by default (TF Serving accepts at most 1000).
DEFAULT_WARMUP_RECORDS = 100


def warmup_batches(inputs: Mapping[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """The input batches that become warmup requests: all samples, then the first one."""
    batches = [dict(inputs)]
    sizes = {np.shape(v)[0] for v in inputs.values() if np.ndim(v)}
    if sizes and min(sizes) > 1 and len(sizes) == 1:
        batches.append({k: np.asarray(v)[:1] for k, v in inputs.items()})
    return batches


def write_warmup_requests(
    path: str | Path,
    model_name: str,
    inputs: Mapping[str, np.ndarray],
    signature_name: str = "serving_default",
) -> int:
    """Write the warmup TFRecord to ``path``; return the number of records."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    batches = warmup_batches(inputs)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for batch in batches:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = signature_name
            for name, array in batch.items():
                to_tensor_proto(array, request.inputs[name])
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return len(batches)


def read_warmup_requests(path: str | Path) -> list[object]:
    """Parse the warmup file back into ``PredictionLog`` messages (for inspection and tests)."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    logs = []
    for record in tf.data.TFRecordDataset(str(path)):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record.numpy())
        logs.append(log)
    return logs


def select_warmup_calls(calls: Iterable[CapturedCall], max_records: int = DEFAULT_WARMUP_RECORDS) -> list[CapturedCall]:
    """Up to ``max_records`` captured calls: the first of each distinct input shape, in capture
    order, then further calls in capture order until the bound (each shape warmed once first)."""
    firsts: list[CapturedCall] = []
    rest: list[CapturedCall] = []
    seen: set[Any] = set()
    for call in calls:
        key = call.input_shapes()
        if key in seen:
            if len(firsts) + len(rest) < max_records:
                rest.append(call)
            continue
        seen.add(key)
        firsts.append(call)
    return (firsts + rest)[:max_records]


def _request_only(call: CapturedCall, model_name: str) -> bytes:
    """The call as a warmup record: the request alone, addressed to ``model_name``, no version."""
    from tfship.wire.protos import serving_wire_pb2 as pb

    field = {"predict": "predict_log", "classify": "classify_log", "regress": "regress_log",
             "multi_inference": "multi_inference_log"}[call.kind]
    log = pb.PredictionLog()
    request = getattr(log, field).request
    request.CopyFrom(getattr(call.log, field).request)
    specs = [t.model_spec for t in request.tasks] if call.kind == "multi_inference" else [request.model_spec]
    for spec in specs:
        spec.name = model_name
        spec.ClearField("version_choice")
    return log.SerializeToString()


def _check_inputs(call: CapturedCall, signature: Signature | None) -> None:
    if signature is None or call.kind != "predict" or call.signature not in ("", "serving_default"):
        return
    expected = {spec.name: spec for spec in signature.inputs}
    if set(call.inputs) != set(expected):
        raise ExportError(f"--warmup-from: {call.position} sends inputs {sorted(call.inputs)} but the exported "
                          f"serving_default takes {sorted(expected)}: that capture is of another model or "
                          "signature (pick the right files, or --no-warmup).")
    for name, array in call.inputs.items():
        want = expected[name].numpy_dtype
        if array.dtype != want and not (array.dtype.kind == "O" and want.kind in "OSU"):
            raise ExportError(f"--warmup-from: {call.position} input {name!r} is {array.dtype}, the exported "
                              f"signature takes {want}.")


def write_warmup_from_capture(path: str | Path, model_name: str, captures: Sequence[str | Path], *,
                              capture_model: str | None = None, max_records: int = DEFAULT_WARMUP_RECORDS,
                              signature: Signature | None = None) -> int:
    """Write the warmup file at ``path`` from captured requests (see :func:`select_warmup_calls`).

    Records of ``capture_model`` (default ``model_name``) are used; ``signature`` (the export's
    serving_default) checks their inputs. Raises ExportError when the capture has no usable record
    or cannot be read. Returns the number of records written.
    """
    from tfship.capture import CaptureReadReport, read_capture, write_records

    if not 1 <= max_records <= MAX_WARMUP_RECORDS:
        raise ExportError(f"warmup records must be between 1 and {MAX_WARMUP_RECORDS} (TF Serving's bound).")
    report = CaptureReadReport()
    calls = select_warmup_calls(read_capture(captures, report, model=capture_model or model_name), max_records)
    if report.errors:
        raise ExportError("--warmup-from: " + "; ".join(report.errors))
    if not calls:
        raise ExportError(f"--warmup-from: no records of model {capture_model or model_name!r} in "
                          f"{', '.join(map(str, captures))}.")
    for call in calls:
        _check_inputs(call, signature)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_records(path, [_request_only(call, model_name) for call in calls])
