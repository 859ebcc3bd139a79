"""Build stand-ins for TensorFlow Serving's own test models, so the suite runs on a fresh clone.

CI lays the real fixtures (``../shared/testdata/tf-serving``, verbatim copies from the TF Serving
repository) beside the checkout; a user who clones tfship alone does not have them. ``generate``
writes the same directory layout with models built here, in TensorFlow 2.x, that compute the same
values behind the same signatures (names, methods, tensor names, dtypes and declared shapes):

``saved_model_half_plus_two_cpu/00000123``
    TF1 graph, variables a=0.5 b=2 c=3. ``serving_default`` x -> y = a*x + b (predict);
    ``classify_x_to_y`` / ``regress_x_to_y`` / ``regress_x_to_y2`` take serialized
    ``tf.train.Example`` protos (float features ``x`` and optional ``x2``) and return
    a*x + b / a*x + b / a*x + c; ``regress_x2_to_y3`` x2 -> a*x2 + c.
``saved_model_half_plus_two_2_versions/00000123`` and ``/00000124``
    The same graph (both versions identical) plus ``classify_x2_to_y3``.
``saved_model_half_plus_three/00000123``
    TF1 graph, y = 0.5*x + 3, with the original's inconsistent signatures: ``serving_default``
    declares x and y without a shape although the graph's x is [-1, 1], and the regress signature
    declares its string Example input as DT_FLOAT. TF Serving (and tfship) run it anyway;
    ``tf.saved_model.load`` refuses it.
``saved_model_half_plus_two_tf2_cpu/00000123``
    A native TF2 ``tf.Module`` export: every signature has method predict, ``serving_default``
    takes x of shape [1] with a default of [0.0].
``matrix_half_plus_two/1``
    TF1 graph without variables: [-1, 3, 3] -> 0.5*x + 2 elementwise.
``bad_half_plus_two/00000123``
    A legacy SessionBundle (``export.meta`` + checkpoint, no ``saved_model.pb``): must fail to load.
``good_model_config.txt`` / ``bad_model_config.txt`` / ``batching_config.txt`` / ``monitoring_config.txt``
    The configs the tests read; the good one keeps the ``${TEST_HALF_PLUS_TWO_DIR}`` placeholders.

The metadata JSON files of the real fixtures are TF Serving's own output and are not made here:
tests comparing against them use the ``tf_serving_shared`` fixture (tests/conftest.py).
``tests/test_tf_serving_models.py`` checks these models against the real ones when ../shared exists.

Run ``python tests/tf_serving_models.py DIR`` to write the models to DIR outside pytest.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["MODELS", "CONFIG_FILES", "generate"]

#: Model base paths ``generate`` writes, with their version directories.
MODELS: dict[str, tuple[str, ...]] = {
    "saved_model_half_plus_two_cpu": ("00000123",),
    "saved_model_half_plus_two_2_versions": ("00000123", "00000124"),
    "saved_model_half_plus_three": ("00000123",),
    "saved_model_half_plus_two_tf2_cpu": ("00000123",),
    "matrix_half_plus_two": ("1",),
    "bad_half_plus_two": ("00000123",),
}
CONFIG_FILES = ("good_model_config.txt", "bad_model_config.txt", "batching_config.txt", "monitoring_config.txt")

PREDICT = "tensorflow/serving/predict"
CLASSIFY = "tensorflow/serving/classify"
REGRESS = "tensorflow/serving/regress"
ASSET_TEXT = "an asset the half_plus_N models carry, as the originals do\n"


def generate(root: Path) -> Path:
    """Write every model and config file under ``root`` (created; must not hold them yet)."""
    import tensorflow as tf  # noqa: F401  (fail here, not halfway, when TensorFlow is missing)

    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tfs-assets-") as scratch:
        asset = Path(scratch) / "foo.txt"
        asset.write_text(ASSET_TEXT)
        _half_plus_two_tf1(root / "saved_model_half_plus_two_cpu" / "00000123", asset, with_classify_x2=False)
        two = root / "saved_model_half_plus_two_2_versions"
        _half_plus_two_tf1(two / "00000123", asset, with_classify_x2=True)
        shutil.copytree(two / "00000123", two / "00000124")
        _half_plus_three_tf1(root / "saved_model_half_plus_three" / "00000123", asset)
        _half_plus_two_tf2(root / "saved_model_half_plus_two_tf2_cpu" / "00000123", asset)
    _matrix_half_plus_two(root / "matrix_half_plus_two" / "1")
    _session_bundle(root / "bad_half_plus_two" / "00000123")
    _config_files(root)
    return root


# --------------------------------------------------------------------------------------- TF1 graphs


def _tensor_info(tensor: Any) -> Any:
    import tensorflow as tf

    return tf.compat.v1.saved_model.build_tensor_info(tensor)


def _signature(inputs: dict[str, Any], outputs: dict[str, Any], method: str) -> Any:
    """A SignatureDef from graph tensors (their real dtype and static shape)."""
    import tensorflow as tf

    return tf.compat.v1.saved_model.build_signature_def(
        {k: _tensor_info(v) for k, v in inputs.items()},
        {k: _tensor_info(v) for k, v in outputs.items()},
        method,
    )


def _declared(name: str, dtype: Any) -> Any:
    """A TensorInfo declaring only a name and dtype (no shape), as TF 1.0 exports did."""
    from tensorflow.core.protobuf import meta_graph_pb2

    return meta_graph_pb2.TensorInfo(name=name, dtype=dtype.as_datatype_enum)


def _parse_examples(serialized: Any, keys: list[str], defaults: list[list[float] | None]) -> list[Any]:
    """Dense float features of shape [1] from a batch of serialized Examples.

    The legacy ``ParseExample`` op, not ``tf.io.parse_example`` (ParseExampleV2): it requires a
    vector of Examples and gives the outputs the static shape [-1, 1] the signatures declare.
    """
    import tensorflow as tf

    return tf.raw_ops.ParseExample(
        serialized=serialized,
        names=tf.constant([], tf.string),
        sparse_keys=[],
        dense_keys=[tf.constant(k) for k in keys],
        dense_defaults=[tf.constant(d if d is not None else [], tf.float32) for d in defaults],
        sparse_types=[],
        dense_shapes=[[1]] * len(keys),
    ).dense_values


def _save_tf1(path: Path, build: Callable[[], tuple[dict[str, Any], list[Any]]]) -> None:
    """Build a graph with ``build`` (-> signature map, asset path tensors) and save it as a SavedModel."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        signatures, assets = build()
        session.run(tf.compat.v1.global_variables_initializer())
        builder = tf.compat.v1.saved_model.Builder(str(path))
        builder.add_meta_graph_and_variables(
            session,
            [tf.saved_model.SERVING],
            signature_def_map=signatures,
            assets_collection=assets or None,
        )
        builder.save()


def _asset_tensor(asset: Path) -> Any:
    import tensorflow as tf

    tensor = tf.constant(str(asset), name="asset_path")
    tf.compat.v1.add_to_collection(tf.compat.v1.GraphKeys.ASSET_FILEPATHS, tensor)
    return tensor


def _half_plus_two_tf1(path: Path, asset: Path, *, with_classify_x2: bool) -> None:
    """saved_model_half_plus_two_cpu (and, with ``classify_x2_to_y3``, the 2-versions model)."""
    import tensorflow as tf

    def build() -> tuple[dict[str, Any], list[Any]]:
        a = tf.compat.v1.Variable(0.5, name="a")
        b = tf.compat.v1.Variable(2.0, name="b")
        c = tf.compat.v1.Variable(3.0, name="c")
        tf_example = tf.compat.v1.placeholder(tf.string, shape=None, name="tf_example")
        parsed_x, parsed_x2 = _parse_examples(tf_example, ["x", "x2"], [None, [0.0]])
        # x and x2 are Identities of the parsed features, so a predict request can feed them
        # directly (bypassing the parse) while classify/regress feed tf_example.
        x = tf.identity(parsed_x, name="x")
        x2 = tf.identity(parsed_x2, name="x2")
        y = tf.identity(a * x + b, name="y")
        y2 = tf.identity(a * x + c, name="y2")
        y3 = tf.identity(a * x2 + c, name="y3")
        signatures = {
            "serving_default": _signature({"x": x}, {"y": y}, PREDICT),
            "classify_x_to_y": _signature({"inputs": tf_example}, {"scores": y}, CLASSIFY),
            "regress_x_to_y": _signature({"inputs": tf_example}, {"outputs": y}, REGRESS),
            "regress_x_to_y2": _signature({"inputs": tf_example}, {"outputs": y2}, REGRESS),
            "regress_x2_to_y3": _signature({"inputs": x2}, {"outputs": y3}, REGRESS),
        }
        if with_classify_x2:
            signatures["classify_x2_to_y3"] = _signature({"inputs": x2}, {"scores": y3}, CLASSIFY)
        return signatures, [_asset_tensor(asset)]

    _save_tf1(path, build)


def _half_plus_three_tf1(path: Path, asset: Path) -> None:
    """saved_model_half_plus_three, including its shapeless and mistyped signature declarations."""
    import tensorflow as tf
    from tensorflow.core.protobuf import meta_graph_pb2

    def build() -> tuple[dict[str, Any], list[Any]]:
        a = tf.compat.v1.Variable(0.5, name="a")
        b = tf.compat.v1.Variable(3.0, name="b")
        c = tf.compat.v1.Variable(3.0, name="c")
        tf_example = tf.compat.v1.placeholder(tf.string, shape=None, name="tf_example")
        (parsed_x,) = _parse_examples(tf_example, ["x"], [None])
        x = tf.identity(parsed_x, name="x")
        y = tf.identity(a * x + b, name="y")
        x2 = tf.compat.v1.placeholder(tf.float32, shape=None, name="x2")
        tf.identity(a * x2 + c, name="y2")  # in the graph, in no signature (as in the original)
        regress_out = tf.identity(y, name="Identity")
        predict = meta_graph_pb2.SignatureDef(method_name=PREDICT)
        predict.inputs["x"].CopyFrom(_declared(x.name, tf.float32))
        predict.outputs["y"].CopyFrom(_declared(y.name, tf.float32))
        regress = meta_graph_pb2.SignatureDef(method_name=REGRESS)
        regress.inputs["inputs"].CopyFrom(_declared(tf_example.name, tf.float32))  # sic: really a string
        regress.outputs["outputs"].CopyFrom(_declared(regress_out.name, tf.float32))
        return {"serving_default": predict, REGRESS: regress}, [_asset_tensor(asset)]

    _save_tf1(path, build)


def _matrix_half_plus_two(path: Path) -> None:
    """matrix_half_plus_two: no variables at all (the SavedModel has only saved_model.pb)."""
    import tensorflow as tf

    def build() -> tuple[dict[str, Any], list[Any]]:
        x = tf.compat.v1.placeholder(tf.float32, shape=[None, 3, 3], name="x")
        y = tf.add(tf.constant(0.5) * x, tf.constant(2.0), name="y")
        return {"serving_default": _signature({"x": x}, {"y": y}, PREDICT)}, []

    _save_tf1(path, build)
    variables = path / "variables"
    if variables.is_dir() and not any(variables.iterdir()):
        variables.rmdir()


def _session_bundle(path: Path) -> None:
    """bad_half_plus_two: y = 0.5*x + 2 saved the pre-SavedModel way (checkpoint + export.meta)."""
    import tensorflow as tf

    path.mkdir(parents=True)
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        a = tf.compat.v1.Variable(0.5, name="Variable")
        b = tf.compat.v1.Variable(2.0, name="Variable_1")
        x = tf.compat.v1.placeholder(tf.float32, name="Placeholder")
        tf.add(a * x, b, name="Add")
        session.run(tf.compat.v1.global_variables_initializer())
        saver = tf.compat.v1.train.Saver()
        saver.save(session, str(path / "export"), write_meta_graph=True)


# --------------------------------------------------------------------------------------- TF2


def _half_plus_two_tf2(path: Path, asset_source: Path) -> None:
    """saved_model_half_plus_two_tf2_cpu: a tf.Module with six predict-method signatures."""
    import tensorflow as tf

    scalar = tf.TensorSpec([1], tf.float32)
    examples = tf.TensorSpec([None], tf.string)

    class HalfPlusTwo(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = tf.Variable(0.5, name="a")
            self.b = tf.Variable(2.0, name="b")
            self.c = tf.Variable(3.0, name="c")
            self.asset = tf.saved_model.Asset(str(asset_source))

        def _parse(self, serialized: Any) -> Any:
            return tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)})["x"]

        # A Python default for x becomes the SignatureDef's `defaults` entry (x may be omitted).
        @tf.function(input_signature=[scalar])
        def serving_default(self, x: Any = tf.constant([0.0])) -> Any:  # noqa: B008
            return {"y": self.a * x + self.b}

        @tf.function(input_signature=[examples])
        def classify_x_to_y(self, inputs: Any) -> Any:
            return {"scores": self.a * self._parse(inputs) + self.b}

        @tf.function(input_signature=[examples])
        def regress_x_to_y(self, inputs: Any) -> Any:
            return {"outputs": self.a * self._parse(inputs) + self.b}

        @tf.function(input_signature=[examples])
        def regress_x_to_y2(self, inputs: Any) -> Any:
            return {"outputs": self.a * self._parse(inputs) + self.c}

        @tf.function(input_signature=[scalar])
        def regress_x2_to_y3(self, inputs: Any) -> Any:
            return {"outputs": self.a * inputs + self.c}

        @tf.function(input_signature=[scalar])
        def classify_x2_to_y3(self, inputs: Any) -> Any:
            return {"scores": self.a * inputs + self.c}

    module = HalfPlusTwo()
    names = ("serving_default", "classify_x_to_y", "regress_x_to_y", "regress_x_to_y2",
             "regress_x2_to_y3", "classify_x2_to_y3")
    tf.saved_model.save(module, str(path), signatures={name: getattr(module, name) for name in names})


# --------------------------------------------------------------------------------------- configs


def _config_files(root: Path) -> None:
    """The text-proto configs the tests read (written as literals: parsing them is what is tested)."""
    (root / "good_model_config.txt").write_text(
        "model_config_list {\n"
        '  config { name: "half_plus_two" base_path: "${TEST_HALF_PLUS_TWO_DIR}" model_platform: "tensorflow" }\n'
        '  config { name: "half_plus_three" base_path: "${TEST_HALF_PLUS_THREE_DIR}" model_platform: "tensorflow" }\n'
        "}\n"
    )
    (root / "bad_model_config.txt").write_text("this file is not a text-format protobuf\n")
    (root / "batching_config.txt").write_text(
        "max_batch_size { value: 128 }\n"
        "batch_timeout_micros { value: 0 }\n"
        "max_enqueued_batches { value: 1000000 }\n"
        "num_batch_threads { value: 8 }\n"
    )
    (root / "monitoring_config.txt").write_text(
        'prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }\n'
    )


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python tests/tf_serving_models.py OUTPUT_DIR", file=sys.stderr)
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(generate(Path(argv[0]).resolve()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
