"""PredictionLog records, TensorFlow-free: build them from numpy, read them back as numpy.

A record is a serialized ``tensorflow.serving.PredictionLog`` -- the record of a TF Serving warmup
file -- built with tfship's own wire protos (same bytes as tensorflow-serving-api's). Its
``log_metadata.model_spec`` names the model, the exact version that served the call and the
signature; ``log_metadata.sampling_config`` the rate the call was sampled at.

Privacy (:class:`~tfship.capture.config.CaptureConfig`): ``exclude_inputs`` removes named request
tensors (Predict) or tf.Example features (Classify/Regress/MultiInference), ``exclude_outputs``
removes named response tensors (Predict), ``requests_only`` leaves the response out.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tfship.errors import CorruptRecordError
from tfship.wire.protos import serving_wire_pb2 as pb
from tfship.wire.tensor import to_ndarray, to_tensor_proto

from .config import CaptureConfig
from .files import expand_capture_paths
from .tfrecord import RecordFile

__all__ = [
    "KINDS", "predict_log", "examples_log", "multi_inference_log", "client_log",
    "CapturedCall", "Position", "decode_log", "read_capture", "CaptureReadReport",
]

#: The APIs a record can hold, by PredictionLog field.
KINDS = {"predict": "predict_log", "classify": "classify_log", "regress": "regress_log",
         "multi_inference": "multi_inference_log"}


def _spec(target: Any, model: str, version: int | None, signature: str | None) -> None:
    target.name = model
    if version is not None:
        target.version.value = int(version)
    if signature:
        target.signature_name = signature


def _finish(log: Any, model: str, version: int | None, signature: str | None,
            config: CaptureConfig | None, timestamp: float | None) -> bytes:
    meta = log.log_metadata
    _spec(meta.model_spec, model, version, signature)
    meta.sampling_config.sampling_rate = config.sampling_rate if config is not None else 1.0
    meta.saved_model_tags.append("serve")
    meta.timestamp_secs = int(time.time() if timestamp is None else timestamp)
    return log.SerializeToString()


def predict_log(model: str, version: int | None, signature: str | None, inputs: Mapping[str, Any],
                outputs: Mapping[str, Any] | None, config: CaptureConfig | None = None, *,
                output_filter: Sequence[str] = (), timestamp: float | None = None) -> bytes:
    """A Predict record from numpy inputs and outputs (``outputs=None``: request only)."""
    excluded_in = config.exclude_inputs if config is not None else frozenset()
    excluded_out = config.exclude_outputs if config is not None else frozenset()
    log = pb.PredictionLog()
    request = log.predict_log.request
    _spec(request.model_spec, model, None, signature)
    for name, value in inputs.items():
        if name not in excluded_in:
            to_tensor_proto(value, request.inputs[name])
    request.output_filter.extend(output_filter)
    if outputs is not None and not (config is not None and config.requests_only):
        response = log.predict_log.response
        _spec(response.model_spec, model, version, signature)
        for name, value in outputs.items():
            if name not in excluded_out:
                to_tensor_proto(value, response.outputs[name])
    return _finish(log, model, version, signature, config, timestamp)


def _fill_input(target: Any, examples: Sequence[bytes], excluded: frozenset[str]) -> None:
    listed = target.example_list.examples
    for data in examples:
        example = listed.add()
        example.MergeFromString(data)
        for name in excluded:
            if name in example.features.feature:
                del example.features.feature[name]
    target.example_list.SetInParent()


def _fill_classification(result: Any, classes: Any, scores: Any) -> None:
    ref = scores if scores is not None else classes
    if ref is None:
        return
    ref = np.asarray(ref)
    for i in range(ref.shape[0]):
        row = result.classifications.add()
        for j in range(ref.shape[1]):
            cls = row.classes.add()
            if classes is not None:
                label = classes[i][j]
                cls.label = label.decode("utf-8", "replace") if isinstance(label, bytes) else str(label)
            if scores is not None:
                cls.score = float(scores[i][j])


def _fill_regression(result: Any, values: Any) -> None:
    for value in np.asarray(values, np.float32).reshape(-1).tolist():
        result.regressions.add().value = value


def examples_log(kind: str, model: str, version: int | None, signature: str | None,
                 examples: Sequence[bytes], result: Any, config: CaptureConfig | None = None, *,
                 timestamp: float | None = None) -> bytes:
    """A Classify (``kind="classify"``) or Regress record from serialized tf.Examples.

    ``result``: for classify anything with ``classes``/``scores`` ([batch, n]) or ``labels``/
    ``scores``; for regress the [batch] values; None for a request-only record.
    """
    if kind not in ("classify", "regress"):
        raise ValueError(f"examples_log kind {kind!r}: classify or regress")
    excluded = config.exclude_inputs if config is not None else frozenset()
    log = pb.PredictionLog()
    entry = log.classify_log if kind == "classify" else log.regress_log
    _spec(entry.request.model_spec, model, None, signature)
    _fill_input(entry.request.input, examples, excluded)
    if result is not None and not (config is not None and config.requests_only):
        _spec(entry.response.model_spec, model, version, signature)
        if kind == "classify":
            classes = getattr(result, "classes", getattr(result, "labels", None))
            _fill_classification(entry.response.result, classes, getattr(result, "scores", None))
        else:
            _fill_regression(entry.response.result, result)
    return _finish(log, model, version, signature, config, timestamp)


def multi_inference_log(model: str, version: int | None, tasks: Sequence[tuple[str, str]],
                        examples: Sequence[bytes], results: Sequence[Any] | None,
                        config: CaptureConfig | None = None, *, timestamp: float | None = None) -> bytes:
    """A MultiInference record: ``tasks`` are ``(signature, method_name)``, ``results`` in task order
    (a classification with ``classes``/``scores``, or regression values)."""
    excluded = config.exclude_inputs if config is not None else frozenset()
    log = pb.PredictionLog()
    entry = log.multi_inference_log
    for signature, method in tasks:
        task = entry.request.tasks.add(method_name=method)
        _spec(task.model_spec, model, None, signature)
    _fill_input(entry.request.input, examples, excluded)
    if results is not None and not (config is not None and config.requests_only):
        for (signature, _), result in zip(tasks, results, strict=True):
            out = entry.response.results.add()
            _spec(out.model_spec, model, version, signature)
            if isinstance(result, np.ndarray):
                _fill_regression(out.regression_result, result)
            else:
                _fill_classification(out.classification_result, getattr(result, "classes", None),
                                     getattr(result, "scores", None))
    return _finish(log, model, version, tasks[0][0] if tasks else None, config, timestamp)


def client_log(kind: str, model: str, version: int | None, signature: str | None, request: Any,
               result: Any, config: CaptureConfig | None = None) -> bytes:
    """The record of a call a client made: ``request`` is the inputs dict (predict) or the serialized
    examples; ``result`` the outputs dict, ClassifyResult or regression values."""
    if kind == "predict":
        return predict_log(model, version, signature, request, result, config)
    return examples_log(kind, model, version, signature, request, result, config)


# ---------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Position:
    """Where a record sits: file, index in the file (0-based), byte offset of its header."""

    path: Path
    index: int
    offset: int

    def __str__(self) -> str:
        return f"{self.path.name}#{self.index} (offset {self.offset})"


@dataclass(frozen=True)
class CapturedCall:
    """One captured call, decoded: what was asked, what was answered, by which version."""

    kind: str
    model: str
    version: int | None
    signature: str
    position: Position
    inputs: dict[str, np.ndarray] = field(default_factory=dict)      # predict
    examples: list[bytes] = field(default_factory=list)             # classify / regress / multi
    outputs: dict[str, np.ndarray] | None = None                    # None: request-only record
    output_filter: tuple[str, ...] = ()
    tasks: tuple[tuple[str, str], ...] = ()                         # multi_inference
    log: Any = None                                                 # the wire PredictionLog

    def input_shapes(self) -> tuple[Any, ...]:
        """A key of the request's shapes (the warmup builder picks one record per key first)."""
        if self.kind == "predict":
            return tuple(sorted((k, v.shape, v.dtype.str) for k, v in self.inputs.items()))
        return (self.kind, len(self.examples))


def _classification_outputs(result: Any) -> dict[str, np.ndarray]:
    rows = result.classifications
    n = max((len(r.classes) for r in rows), default=0)
    labels = np.empty((len(rows), n), object)
    scores = np.zeros((len(rows), n), np.float32)
    labels[:] = b""
    for i, row in enumerate(rows):
        for j, cls in enumerate(row.classes):
            labels[i, j] = cls.label.encode()
            scores[i, j] = cls.score
    return {"classes": labels, "scores": scores}


def decode_log(data: bytes, position: Position) -> CapturedCall:
    """A record's bytes -> :class:`CapturedCall` (raises ValueError when it is not a PredictionLog)."""
    log = pb.PredictionLog()
    try:
        log.ParseFromString(data)
    except Exception as exc:  # protobuf's DecodeError
        raise ValueError(f"{position}: not a PredictionLog ({exc})") from None
    kind_field = log.WhichOneof("log_type")
    kind = next((k for k, f in KINDS.items() if f == kind_field), None)
    if kind is None:
        raise ValueError(f"{position}: a PredictionLog without a predict/classify/regress/"
                         "multi_inference log")
    meta = log.log_metadata.model_spec
    version = meta.version.value if meta.HasField("version") else None
    entry = getattr(log, kind_field)
    common: dict[str, Any] = {"kind": kind, "version": version, "position": position, "log": log}
    if kind == "predict":
        request = entry.request
        outputs = ({k: to_ndarray(v) for k, v in entry.response.outputs.items()}
                   if entry.HasField("response") else None)
        if version is None and entry.response.model_spec.HasField("version"):
            common["version"] = entry.response.model_spec.version.value
        return CapturedCall(model=meta.name or request.model_spec.name,
                            signature=request.model_spec.signature_name or meta.signature_name, **common,
                            inputs={k: to_ndarray(v) for k, v in request.inputs.items()},
                            outputs=outputs, output_filter=tuple(request.output_filter))
    request = entry.request
    examples = _examples(request.input)
    if kind == "multi_inference":
        tasks = tuple((t.model_spec.signature_name, t.method_name) for t in request.tasks)
        outputs = None
        if entry.HasField("response"):
            outputs = {}
            for (sig, _), result in zip(tasks, entry.response.results, strict=False):
                which = result.WhichOneof("result")
                if which == "regression_result":
                    outputs[f"{sig or 'serving_default'}/outputs"] = np.array(
                        [r.value for r in result.regression_result.regressions], np.float32)
                elif which == "classification_result":
                    for key, value in _classification_outputs(result.classification_result).items():
                        outputs[f"{sig or 'serving_default'}/{key}"] = value
        return CapturedCall(model=meta.name, signature=meta.signature_name, examples=examples,
                            outputs=outputs, tasks=tasks, **common)
    outputs = None
    if entry.HasField("response"):
        if kind == "classify":
            outputs = _classification_outputs(entry.response.result)
        else:
            outputs = {"outputs": np.array([r.value for r in entry.response.result.regressions], np.float32)}
    return CapturedCall(model=meta.name or request.model_spec.name,
                        signature=request.model_spec.signature_name or meta.signature_name,
                        examples=examples, outputs=outputs, **common)


def _examples(input_proto: Any) -> list[bytes]:
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        return [e.SerializeToString() for e in input_proto.example_list.examples]
    if kind == "example_list_with_context":
        listed = input_proto.example_list_with_context
        context = listed.context.SerializeToString() if listed.HasField("context") else b""
        return [context + e.SerializeToString() for e in listed.examples]
    return []


@dataclass
class CaptureReadReport:
    """What reading a set of capture files found besides the records."""

    files: list[Path] = field(default_factory=list)
    records: int = 0
    errors: list[str] = field(default_factory=list)   # corrupt files / undecodable records
    torn: list[str] = field(default_factory=list)     # files ending in a torn record (not an error)


def read_capture(paths: Iterable[str | Path], report: CaptureReadReport | None = None,
                 model: str | None = None) -> Iterator[CapturedCall]:
    """Every captured call in ``paths`` (files, or directories of ``*.tfrecord``), in capture order.

    A corrupt file stops at its bad record: its error (file and byte offset) goes to
    ``report.errors`` and reading goes on with the next file. With ``model``, records of other
    models are skipped.
    """
    report = report if report is not None else CaptureReadReport()
    for path in expand_capture_paths(paths):
        report.files.append(path)
        reader = RecordFile(path)
        try:
            for record in reader:
                position = Position(path, record.index, record.offset)
                try:
                    call = decode_log(record.data, position)
                except ValueError as exc:
                    report.errors.append(str(exc))
                    continue
                if model is not None and call.model != model:
                    continue
                report.records += 1
                yield call
        except CorruptRecordError as exc:
            report.errors.append(str(exc))
        except OSError as exc:
            report.errors.append(f"{path}: cannot read: {exc.strerror or exc}")
        if reader.torn_at is not None:
            report.torn.append(f"{path}: ends in a torn record at byte offset {reader.torn_at} "
                               "(a write cut short; the records before it were read)")
