"""The bench's models: an MNIST-shaped MLP and a small CNN exported as SavedModels, the reference
predictions every served reply is checked against, and the in-process ceiling (the exported
``serving_default`` signature called from threads in this process).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tables import Cell, print_cell, summarize


def build_models(base: Path) -> dict[str, tuple[Path, Path, tuple[int, ...]]]:
    """Export the MLP and CNN; returns name -> (version dir, .keras file, input row shape)."""
    import keras

    keras.utils.set_random_seed(0)
    models = {
        "mlp": (
            keras.Sequential([
                keras.Input((784,)),
                keras.layers.Dense(256, activation="relu"),
                keras.layers.Dense(128, activation="relu"),
                keras.layers.Dense(10),
            ]),
            (784,),
        ),
        "cnn": (
            keras.Sequential([
                keras.Input((28, 28, 1)),
                keras.layers.Conv2D(16, 3, activation="relu"),
                keras.layers.MaxPooling2D(),
                keras.layers.Conv2D(32, 3, activation="relu"),
                keras.layers.MaxPooling2D(),
                keras.layers.Flatten(),
                keras.layers.Dense(64, activation="relu"),
                keras.layers.Dense(10),
            ]),
            (28, 28, 1),
        ),
    }
    out = {}
    for name, (model, shape) in models.items():
        version_dir = base / "models" / name / "1"
        model.export(str(version_dir), format="tf_saved_model", verbose=False)
        keras_file = base / f"{name}.keras"
        model.save(keras_file)
        out[name] = (version_dir, keras_file, shape)
    return out


@functools.cache
def _serving_signature(version_dir: Path) -> tuple[Any, str]:
    import tensorflow as tf

    signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    (alias,) = signature.structured_input_signature[1]
    return signature, alias


def serving_input_alias(version_dir: Path) -> str:
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel.FromString((version_dir / "saved_model.pb").read_bytes())
    (alias,) = saved.meta_graphs[0].signature_def["serving_default"].inputs
    return alias


def check_predictions(target: str, model: str, version_dir: Path, x: np.ndarray, served: np.ndarray) -> None:
    """The served predictions are the in-process model's: same shape, allclose (float32 JSON round trips
    and batched vs single-row kernels differ in the last bits only)."""
    import tensorflow as tf

    signature, alias = _serving_signature(version_dir)
    (expected,) = signature(**{alias: tf.constant(x)}).values()
    expected = expected.numpy()
    if served.shape != expected.shape:
        raise RuntimeError(f"{target} {model}: predictions of shape {served.shape}, in-process {expected.shape}")
    if not np.allclose(served, expected, rtol=1e-4, atol=1e-4):
        worst = float(np.max(np.abs(served - expected)))
        raise RuntimeError(f"{target} {model}: predictions differ from the in-process model's (max |diff| {worst})")


def _threaded_calls(call: Callable[[], object], concurrency: int, seconds: float,
                    min_calls: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    lock = threading.Lock()
    start = time.perf_counter()
    deadline = start + seconds

    def worker() -> None:
        while time.perf_counter() < deadline or len(latencies) < min_calls:
            t0 = time.perf_counter()
            call()
            with lock:
                latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, time.perf_counter() - start


def in_process_cells(name: str, version_dir: Path, shape: tuple[int, ...], batches: list[int],
                     concurrencies: list[int], seconds: float, min_calls: int) -> list[Cell]:
    """The ceiling: the exported serving_default signature, called from threads in-process."""
    import tensorflow as tf

    signature, alias = _serving_signature(version_dir)
    cells = []
    for batch in batches:
        x = tf.constant(np.random.default_rng(0).random((batch, *shape), dtype=np.float32))
        for _ in range(3):
            signature(**{alias: x})
        def call(x: object = x) -> object:
            return signature(**{alias: x})

        for concurrency in concurrencies:
            latencies, elapsed = _threaded_calls(call, concurrency, seconds, min_calls)
            cells.append(summarize(name, "in-process", batch, concurrency, latencies, 0, elapsed))
            print_cell(cells[-1])
    return cells
