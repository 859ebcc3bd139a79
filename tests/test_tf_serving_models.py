"""The generated TF Serving test models (tests/tf_serving_models.py) stand in for the real ones.

Every other test uses the generated models; these compare them with TF Serving's real fixtures in
../shared: same layout, identical SignatureDefs (so identical GetModelMetadata), the same outputs
and errors through tfship's runtime for every signature, and configs that parse the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tf_serving_models import CONFIG_FILES, MODELS

pytestmark = pytest.mark.tf_serving_shared
tf = pytest.importorskip("tensorflow")

from tfship.serving.config import (  # noqa: E402
    read_batching_parameters_file,
    read_model_config_file,
    read_monitoring_config_file,
)
from tfship.serving.runtime import Servable  # noqa: E402

from tfship.errors import ServingError  # noqa: E402

SAVED_MODELS = [(model, version) for model, versions in MODELS.items() if model != "bad_half_plus_two"
                for version in versions]


def ex(**features: float) -> bytes:
    feature = {k: tf.train.Feature(float_list=tf.train.FloatList(value=[v])) for k, v in features.items()}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def f32(value: Any) -> np.ndarray:
    return np.asarray(value, np.float32)


# (signature, method, input): predict inputs are {alias: array}, classify/regress inputs Examples.
# The values of the testdata README plus what a client may get wrong (missing feature, odd shapes).
_TF1_HALF_PLUS_TWO = [
    ("serving_default", "predict", {"x": f32([[1], [2], [3], [4]])}),
    ("serving_default", "predict", {"x": f32([[1, 2], [3, 4]])}),
    ("serving_default", "predict", {"x": f32([1, 2, 3])}),
    ("classify_x_to_y", "classify", [ex(x=2), ex(x=20), ex(x=10)]),
    ("regress_x_to_y", "regress", [ex(x=2), ex(x=80)]),
    ("regress_x_to_y2", "regress", [ex(x=2)]),
    ("regress_x_to_y", "regress", [ex(x2=2)]),  # x is required
    ("regress_x2_to_y3", "predict", {"inputs": f32([[2]])}),
    ("regress_x_to_y", "predict", {"inputs": np.array([ex(x=1, x2=5)], dtype=object)}),
    ("regress_x2_to_y3", "regress", [ex(x=1)]),  # x2:0 is a float feed, not an Example input
]
CASES: dict[str, list[tuple[str, str, Any]]] = {
    "saved_model_half_plus_two_cpu": _TF1_HALF_PLUS_TWO,
    "saved_model_half_plus_two_2_versions": _TF1_HALF_PLUS_TWO + [
        ("classify_x2_to_y3", "predict", {"inputs": f32([[2]])}),
    ],
    "saved_model_half_plus_three": [
        ("serving_default", "predict", {"x": f32(2.0)}),
        ("serving_default", "predict", {"x": f32([1, 2, 5])}),
        ("serving_default", "predict", {"x": f32([[2.0]])}),
        ("tensorflow/serving/regress", "regress", [ex(x=1), ex(x=2)]),
    ],
    "saved_model_half_plus_two_tf2_cpu": [
        ("serving_default", "predict", {"x": f32([2.0])}),
        ("serving_default", "predict", {}),
        ("serving_default", "predict", {"x": f32([[2.0]])}),
        ("classify_x_to_y", "predict", {"inputs": np.array([ex(x=2)], dtype=object)}),
        ("regress_x_to_y", "predict", {"inputs": np.array([ex(x=2), ex(x=4)], dtype=object)}),
        ("regress_x_to_y2", "predict", {"inputs": np.array([ex(x=2)], dtype=object)}),
        ("regress_x2_to_y3", "predict", {"inputs": f32([2.0])}),
        ("classify_x2_to_y3", "predict", {"inputs": f32([2.0])}),
        ("regress_x_to_y", "regress", [ex(x=2)]),  # TF2 signatures all have method predict
    ],
    "matrix_half_plus_two": [
        ("serving_default", "predict", {"x": np.arange(9, dtype=np.float32).reshape(1, 3, 3)}),
        ("serving_default", "predict", {"x": np.ones((2, 3, 3), np.float32)}),
        ("serving_default", "predict", {"x": np.ones((1, 2, 2), np.float32)}),
    ],
}


def _meta_graph(version_dir: Path) -> Any:
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((version_dir / "saved_model.pb").read_bytes())
    (meta_graph,) = saved_model.meta_graphs
    return meta_graph


def _outcome(servable: Servable, signature: str, method: str, value: Any) -> Any:
    """What a call returns, as comparable plain data (an error is its class and code)."""
    try:
        if method == "predict":
            out: Any = servable.predict(signature, value)
        elif method == "classify":
            result = servable.classify(signature, value)
            out = {"classes": result.classes, "scores": result.scores}
        else:
            out = {"values": servable.regress(signature, value)}
    except ServingError as exc:
        return type(exc).__name__, exc.code
    return {k: None if v is None else (v.dtype.str, v.shape, v.tolist()) for k, v in out.items()}


@pytest.fixture(scope="module")
def loaded() -> Iterator[Any]:
    """``loaded(root, model, version)`` -> a Servable, closed at the end of the module."""
    servables: list[Servable] = []

    def load(root: Path, model: str, version: str) -> Servable:
        servables.append(Servable.load(model, int(version), root / model / version))
        return servables[-1]

    yield load
    for servable in servables:
        servable.close()


def test_same_layout(tf_serving_testdata: Path, tf_serving_shared: Path) -> None:
    for model, versions in MODELS.items():
        for root in (tf_serving_testdata, tf_serving_shared):
            assert sorted(p.name for p in (root / model).iterdir()) == list(versions), (root, model)
    for name in CONFIG_FILES:
        assert (tf_serving_testdata / name).is_file() and (tf_serving_shared / name).is_file()


@pytest.mark.parametrize(("model", "version"), SAVED_MODELS)
def test_signature_defs_are_identical(tf_serving_testdata: Path, tf_serving_shared: Path,
                                      model: str, version: str) -> None:
    real = _meta_graph(tf_serving_shared / model / version)
    generated = _meta_graph(tf_serving_testdata / model / version)
    assert list(generated.meta_info_def.tags) == list(real.meta_info_def.tags) == ["serve"]
    assert dict(generated.signature_def) == dict(real.signature_def)


@pytest.mark.parametrize(("model", "version"), SAVED_MODELS)
def test_every_signature_computes_the_same(loaded: Any, tf_serving_testdata: Path, tf_serving_shared: Path,
                                           model: str, version: str) -> None:
    real = loaded(tf_serving_shared, model, version)
    generated = loaded(tf_serving_testdata, model, version)
    cases = CASES[model]
    assert {signature for signature, _, _ in cases} >= set(real.signature_defs) - {"__saved_model_init_op"}
    for signature, method, value in cases:
        expected = _outcome(real, signature, method, value)
        assert _outcome(generated, signature, method, value) == expected, (signature, method, value)
    # the cases are not all errors: the models really were compared on values
    assert sum(isinstance(_outcome(real, s, m, v), dict) for s, m, v in cases) >= len(cases) // 2


def test_the_broken_model_fails_to_load_the_same_way(tf_serving_testdata: Path, tf_serving_shared: Path) -> None:
    errors = []
    for root in (tf_serving_testdata, tf_serving_shared):
        path = root / "bad_half_plus_two" / "00000123"
        assert (path / "export.meta").is_file() and not (path / "saved_model.pb").exists()
        with pytest.raises(ServingError) as info:
            Servable.load("bad", 123, path)
        errors.append((type(info.value), info.value.message.replace(str(root), "ROOT")))
    assert errors[0] == errors[1]


def test_configs_parse_the_same(tf_serving_testdata: Path, tf_serving_shared: Path) -> None:
    for read, name in ((read_model_config_file, "good_model_config.txt"),
                       (read_batching_parameters_file, "batching_config.txt"),
                       (read_monitoring_config_file, "monitoring_config.txt")):
        assert read(tf_serving_testdata / name) == read(tf_serving_shared / name), name
    for root in (tf_serving_testdata, tf_serving_shared):
        with pytest.raises(ServingError, match="Invalid protobuf file"):
            read_model_config_file(root / "bad_model_config.txt")
