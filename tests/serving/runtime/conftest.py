"""Fixtures of the runtime tests: real TF Serving test models, tiny Keras 3 exports, a gated model.

Loaded servables are module-scoped (a load costs ~0.1-0.5 s); tests that need a fresh one (warmup,
batching) load their own.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tfship.serving.runtime import Servable  # noqa: E402


def _example(**features: float) -> bytes:
    """A serialized tf.train.Example with one float feature per keyword."""
    feature = {
        key: tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
        for key, value in features.items()
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


@pytest.fixture(scope="session")
def half_plus_two_dir(tf_serving_testdata: Path) -> Path:
    return tf_serving_testdata / "saved_model_half_plus_two_cpu" / "00000123"


@pytest.fixture(scope="module")
def half_plus_two(half_plus_two_dir: Path) -> Iterator[Servable]:
    servable = Servable.load("half_plus_two", 123, half_plus_two_dir)
    yield servable
    servable.close()


@pytest.fixture(scope="module")
def half_plus_two_tf2(tf_serving_testdata: Path) -> Iterator[Servable]:
    path = tf_serving_testdata / "saved_model_half_plus_two_tf2_cpu" / "00000123"
    servable = Servable.load("half_plus_two_tf2", 123, path)
    yield servable
    servable.close()


@pytest.fixture(scope="module")
def half_plus_three(tf_serving_testdata: Path) -> Iterator[Servable]:
    path = tf_serving_testdata / "saved_model_half_plus_three" / "00000123"
    servable = Servable.load("half_plus_three", 123, path)
    yield servable
    servable.close()


def _open_gate(servable: Servable, count: int = 1) -> None:
    """Release ``count`` blocked runs of the gated model's ``gated`` signature (unbatched)."""
    signature = servable.signature_defs["open"]
    servable._bundle.run({signature.inputs["v"].name: np.zeros(count, np.float32)},
                         [signature.outputs["opened"].name])


@pytest.fixture(scope="session")
def keras_exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, object]]:
    """Tiny Keras 3 models exported with ``model.export(dir, format="tf_saved_model")``.

    ``mlp``: 4 floats -> Dense(3); ``lookup``: strings -> StringLookup ids (needs table init).
    Returns name -> (version dir, in-memory model).
    """
    keras = pytest.importorskip("keras")
    base = tmp_path_factory.mktemp("keras")
    keras.utils.set_random_seed(7)
    mlp = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, "relu"), keras.layers.Dense(3)])
    words = keras.Input((1,), dtype="string")
    ids = keras.layers.StringLookup(vocabulary=["cat", "dog", "fish"])(words)
    lookup = keras.Model(words, ids)
    out = {}
    for name, model in (("mlp", mlp), ("lookup", lookup)):
        path = base / name / "1"
        model.export(str(path), format="tf_saved_model", verbose=False)
        out[name] = (path, model)
    return out


@pytest.fixture(scope="session")
def example():
    """``example(x=2.0)`` -> serialized tf.train.Example with float features."""
    return _example


@pytest.fixture(scope="session")
def open_gate():
    """``open_gate(servable, n)`` releases n blocked runs of the gated model."""
    return _open_gate


@pytest.fixture
def writable_half_plus_two(half_plus_two_dir: Path, tmp_path: Path) -> Path:
    """A writable copy of half_plus_two v123 (to add assets.extra files to)."""
    return Path(shutil.copytree(half_plus_two_dir, tmp_path / "123"))
