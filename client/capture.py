"""Client-side capture: the calls a client makes, as the server's capture records them.

For fleets on the real TensorFlow Serving image (whose open-source build ships no log collector):
``connect(url, ClientConfig(capture=CaptureConfig("capture/", sampling_rate=0.05)))`` records each
sampled successful predict / classify / regress of that client -- sync or asyncio -- as a
``PredictionLog`` in the same files, layout and format as ``tfship-model-server``'s capture. On the
call path it only draws the sample and copies the inputs; records are built and written by the
:class:`~tfship.capture.CaptureSink` writer thread, bounded like the server's.

The version in a record is the one that answered when the transport says (gRPC predict), else the
version the call pinned, else none.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tfship.capture import CaptureConfig, CaptureSink
from tfship.capture.records import client_log

__all__ = ["ClientCapture"]

DEFAULT_SIGNATURE = "serving_default"


def _serialized(examples: Sequence[Any], context: Mapping[str, Any] | None) -> list[bytes]:
    from tfship.client.examples import example_proto

    head = example_proto(context).SerializeToString() if context is not None else b""
    # context + example bytes parse as their merge: what the server feeds the model (and records)
    return [head + example_proto(e).SerializeToString() for e in examples]


class ClientCapture:
    """One sink per model the client calls; ``observe`` after each successful call."""

    def __init__(self, config: CaptureConfig) -> None:
        self.config = config
        self._sinks: dict[str, CaptureSink] = {}
        self._lock = threading.Lock()

    def sink(self, model: str) -> CaptureSink:
        sink = self._sinks.get(model)
        if sink is None:
            with self._lock:
                sink = self._sinks.get(model)
                if sink is None:
                    sink = self._sinks[model] = CaptureSink(self.config, model)
        return sink

    def sampled(self) -> bool:
        rate = self.config.sampling_rate
        return rate >= 1.0 or random.random() < rate

    def predict(self, model: str, version: int | None, signature: str | None,
                inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> None:
        if not self.sampled():
            return
        config = self.config
        kept = {k: np.array(v) for k, v in inputs.items() if k not in config.exclude_inputs}
        held = sum(a.nbytes for a in kept.values()) + sum(getattr(a, "nbytes", 0) for a in outputs.values())
        self.sink(model).record(lambda: client_log("predict", model, version, signature or DEFAULT_SIGNATURE,
                                                   kept, outputs, config), held)

    def examples(self, kind: str, model: str, version: int | None, signature: str | None,
                 examples: Sequence[Any], context: Mapping[str, Any] | None, result: Any) -> None:
        if not self.sampled():
            return
        config = self.config
        try:
            serialized = _serialized(examples, context)
        except Exception:  # noqa: BLE001 - capture never fails the call it records
            return
        self.sink(model).record(lambda: client_log(kind, model, version, signature or DEFAULT_SIGNATURE,
                                                   serialized, result, config), sum(map(len, serialized)))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every record queued so far is written (tests, and before reading the files)."""
        return all(sink.flush(timeout) for sink in list(self._sinks.values()))

    def close(self) -> None:
        with self._lock:
            sinks, self._sinks = list(self._sinks.values()), {}
        for sink in sinks:
            sink.close()
