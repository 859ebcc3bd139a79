"""Server-side traffic capture: each model's ``logging_config``, applied at start and every reload.

``ModelConfig.logging_config`` (TF Serving's own field; see :mod:`tfship.capture.config` for the
collector ``type`` options) turns capture on for one model. :class:`ServerCapture` keeps one
:class:`~tfship.capture.CaptureSink` per capturing model and is a data plane observer: after every
served Predict, Classify, Regress and MultiInference -- whatever the front end -- it samples the
call and queues it. On the serving loop it only draws the sample and copies the request's arrays;
the PredictionLog is built in the sink's writer thread. A config reload that changes a model's
logging_config closes its sink (writing what is queued) and opens the new one; one that drops it
turns capture off. Records written and dropped are Prometheus counters (``serving/metrics.py``).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from tfship.capture import CaptureConfig, CaptureSink
from tfship.capture.records import examples_log, multi_inference_log, predict_log
from tfship.errors import ConfigError, InvalidArgumentError

__all__ = ["ServerCapture", "capture_configs"]

log = logging.getLogger("tfship.serving")

_CLASSIFY = "tensorflow/serving/classify"
_REGRESS = "tensorflow/serving/regress"


def capture_configs(config: Any) -> dict[str, CaptureConfig]:
    """model name -> CaptureConfig of every model whose ``logging_config`` sets a collector.

    Raises InvalidArgumentError naming the model when a logging_config is not one tfship can run.
    """
    out: dict[str, CaptureConfig] = {}
    if config.WhichOneof("config") != "model_config_list":
        return out
    for model in config.model_config_list.config:
        if not model.HasField("logging_config"):
            continue
        logging_config = model.logging_config
        collector = logging_config.log_collector_config
        if not collector.type and not collector.filename_prefix:
            continue  # an empty logging_config: nothing to collect, as upstream
        try:
            out[model.name] = CaptureConfig.from_collector(
                collector.type, collector.filename_prefix, logging_config.sampling_config.sampling_rate)
        except ConfigError as exc:
            raise InvalidArgumentError(f"logging_config of model {model.name}: {exc}") from None
    return out


class ServerCapture:
    """The capturing models' sinks, and the data plane observer that feeds them."""

    def __init__(self, metrics: Any = None) -> None:
        self.metrics = metrics
        self._sinks: dict[str, tuple[CaptureConfig, CaptureSink]] = {}
        self._lock = threading.Lock()

    def apply(self, configs: Mapping[str, CaptureConfig]) -> None:
        """Make the running sinks match ``configs`` (unchanged models keep their sink)."""
        closing: list[CaptureSink] = []
        with self._lock:
            sinks = dict(self._sinks)
            for name, (config, sink) in list(sinks.items()):
                if configs.get(name) != config:
                    closing.append(sink)
                    del sinks[name]
            for name, config in configs.items():
                if name not in sinks:
                    on_written, on_dropped = (self.metrics.capture_hooks(name) if self.metrics is not None
                                              else (None, None))
                    sinks[name] = (config, CaptureSink(config, name, on_written=on_written,
                                                       on_dropped=on_dropped))
                    log.info("Capturing model %s at sampling rate %g to %s", name, config.sampling_rate,
                             config.filename_prefix)
            self._sinks = sinks  # replaced whole: observe() reads it without the lock
        for sink in closing:
            log.info("Stopped capturing model %s", sink.model)
            sink.close()

    def sink(self, model: str) -> CaptureSink | None:
        """The sink capturing ``model`` (None when its calls are not captured)."""
        entry = self._sinks.get(model)
        return entry[1] if entry is not None else None

    def close(self) -> None:
        self.apply({})

    def observe(self, record: Any) -> None:
        """Data plane observer: sample one served call and queue its PredictionLog."""
        entry = self._sinks.get(record.model)
        if entry is None or record.error is not None or record.version is None:
            return
        config, sink = entry
        rate = config.sampling_rate
        if rate < 1.0 and random.random() >= rate:
            return
        api, model, version = record.api, record.model, record.version
        signature, outputs = record.signature_name, record.outputs
        if api == "predict":
            # the request's arrays may be views into its buffers: copy before leaving the call
            inputs = {k: np.array(v) for k, v in record.inputs.items() if k not in config.exclude_inputs}
            held = sum(a.nbytes for a in inputs.values()) + sum(
                getattr(a, "nbytes", 0) for a in (outputs or {}).values())
            sink.record(lambda: predict_log(model, version, signature, inputs, outputs, config), held)
        elif api in ("classify", "regress"):
            examples = list(record.inputs)
            sink.record(lambda: examples_log(api, model, version, signature, examples, outputs, config),
                        sum(map(len, examples)))
        elif api == "multi_inference":
            examples = list(record.inputs)
            names = signature.split(",") if signature else []
            results = list(outputs) if outputs is not None else None
            tasks = [(name, _REGRESS if results is not None and isinstance(result, np.ndarray) else _CLASSIFY)
                     for name, result in zip(names, results or [None] * len(names), strict=False)]
            sink.record(lambda: multi_inference_log(model, version, tasks, examples, results, config),
                        sum(map(len, examples)))
