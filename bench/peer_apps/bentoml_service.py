"""BentoML 1.4 service serving the bench's exported SavedModels (run by bench/peers.py in its own venv).

Written the way BentoML's docs show a custom model: a ``@bentoml.service`` class that loads the
model in ``__init__`` (here ``tf.saved_model.load``, the exported ``serving_default`` signature) and
one ``@bentoml.api`` per model taking and returning an ``np.ndarray``; the JSON body is
``{"instances": [[...], ...]}`` (the parameter's name), the reply a JSON array of rows. With
``TFSHIP_BENCH_BATCHING=1`` every API is ``batchable`` (adaptive batching along axis 0).

Environment: ``TFSHIP_BENCH_MODELS`` (JSON: model name -> SavedModel version dir),
``TFSHIP_BENCH_BATCHING`` ("1": batching on), ``TFSHIP_BENCH_WORKERS`` (worker processes).
"""

from __future__ import annotations

import json
import os
from typing import Any

import bentoml
import numpy as np
import tensorflow as tf

MODELS: dict[str, str] = json.loads(os.environ["TFSHIP_BENCH_MODELS"])
BATCHING = os.environ.get("TFSHIP_BENCH_BATCHING") == "1"
# BentoML's docs: one worker per CPU core for CPU-bound inference ("cpu_count"); each worker is a
# process with its own GIL, HTTP stack and copy of the model. On 2 cores that is 2 workers.
WORKERS = int(os.environ.get("TFSHIP_BENCH_WORKERS", "2"))
# Adaptive batching: the batch may hold a whole b1024 request; max_latency_ms is BentoML's latency
# budget (requests that cannot meet it are rejected with 503), set far above any cell's latency so
# it never rejects, and the dispatcher's own regression picks the window.
API_OPTIONS: dict[str, Any] = (
    {"batchable": True, "batch_dim": 0, "max_batch_size": 1024, "max_latency_ms": 10_000} if BATCHING else {}
)


def _load(version_dir: str) -> Any:
    signature = tf.saved_model.load(version_dir).signatures["serving_default"]
    (alias,) = signature.structured_input_signature[1]

    def run(x: np.ndarray) -> np.ndarray:
        (output,) = signature(**{alias: tf.constant(x, dtype=tf.float32)}).values()
        return output.numpy()

    return run


@bentoml.service(workers=WORKERS, traffic={"timeout": 600}, logging={"access": {"enabled": False}})
class TfshipBench:
    def __init__(self) -> None:
        self.runs = {name: _load(path) for name, path in MODELS.items()}

    @bentoml.api(**API_OPTIONS)
    def mlp(self, instances: np.ndarray) -> np.ndarray:
        return self.runs["mlp"](instances)

    @bentoml.api(**API_OPTIONS)
    def cnn(self, instances: np.ndarray) -> np.ndarray:
        return self.runs["cnn"](instances)
