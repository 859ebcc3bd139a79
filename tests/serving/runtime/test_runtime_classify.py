"""Classify / Regress / MultiInference semantics and tf.Example inputs (TF Serving compat spec §5.2, 5.3)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import input_pb2
from tfship.serving.runtime import Classification, Servable, serialized_examples

from tfship.errors import FailedPreconditionError, InvalidArgumentError, UnimplementedError

CLASSIFY = "tensorflow/serving/classify"
REGRESS = "tensorflow/serving/regress"


@pytest.fixture(scope="module")
def classes_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servable]:
    """TF1 model with a classify signature returning classes+scores, and malformed signatures."""
    path = tmp_path_factory.mktemp("classes") / "1"
    graph = tf.Graph()
    with graph.as_default():
        inputs = tf.compat.v1.placeholder(tf.string, [None], name="inputs")
        rows = tf.shape(inputs)[0:1]
        classes = tf.tile(tf.constant([[b"cat", b"dog"]]), tf.concat([rows, [1]], 0))
        scores = tf.tile(tf.constant([[0.25, 0.75]]), tf.concat([rows, [1]], 0))
        flat = tf.reshape(scores, [-1])
        info = tf.compat.v1.saved_model.build_tensor_info
        build = tf.compat.v1.saved_model.build_signature_def

        def sig(ins, outs, method=CLASSIFY):
            return build({k: info(v) for k, v in ins.items()}, {k: info(v) for k, v in outs.items()}, method)

        signatures = {
            "both": sig({"inputs": inputs}, {"classes": classes, "scores": scores}),
            "classes_only": sig({"inputs": inputs}, {"classes": classes}),
            "flat_scores": sig({"inputs": inputs}, {"scores": flat}),
            "two_inputs": sig({"inputs": inputs, "other": inputs}, {"scores": scores}),
            "wrong_alias": sig({"examples": inputs}, {"scores": scores}),
            "no_known_output": sig({"inputs": inputs}, {"probabilities": scores}),
            "wide_regression": sig({"inputs": inputs}, {"outputs": scores}, REGRESS),
        }
        with tf.compat.v1.Session(graph=graph) as session:
            builder = tf.compat.v1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map=signatures)
            builder.save()
    servable = Servable.load("classes", 1, path)
    yield servable
    servable.close()


def test_classify_scores_only(half_plus_two, example):
    result = half_plus_two.classify("classify_x_to_y", [example(x=2.0), example(x=20.0)])
    assert isinstance(result, Classification) and result.classes is None
    np.testing.assert_array_equal(result.scores, np.float32([[3.0], [12.0]]))


def test_classify_classes_and_scores(classes_model, example):
    result = classes_model.classify("both", [example(x=1.0)] * 3)
    assert result.classes.shape == (3, 2) and result.classes[2].tolist() == [b"cat", b"dog"]
    np.testing.assert_array_equal(result.scores, np.float32([[0.25, 0.75]] * 3))
    only = classes_model.classify("classes_only", [example(x=1.0)])
    assert only.scores is None and only.classes.tolist() == [[b"cat", b"dog"]]


def test_regress_values(half_plus_two, half_plus_two_tf2, example):
    np.testing.assert_array_equal(
        half_plus_two.regress("regress_x_to_y", [example(x=2.0), example(x=80.0)]), np.float32([3.0, 42.0])
    )
    np.testing.assert_array_equal(half_plus_two.regress("regress_x_to_y2", [example(x=2.0)]), np.float32([4.0]))
    # TF2 signatures all say tensorflow/serving/predict; the method name is not enforced.
    np.testing.assert_array_equal(half_plus_two_tf2.regress("regress_x_to_y", [example(x=2.0)]), np.float32([3.0]))
    result = half_plus_two_tf2.classify("classify_x_to_y", [example(x=2.0)])
    np.testing.assert_array_equal(result.scores, np.float32([[3.0]]))


def test_classify_regress_signature_errors(half_plus_two, classes_model, example):
    ex = [example(x=1.0)]
    with pytest.raises(InvalidArgumentError, match="No signature was found with the name: nope"):
        half_plus_two.classify("nope", ex)
    with pytest.raises(InvalidArgumentError, match="No signature was found with the name: serving_default"):
        classes_model.regress("", ex)
    with pytest.raises(InvalidArgumentError, match="Expected one input Tensor."):
        classes_model.classify("two_inputs", ex)
    with pytest.raises(FailedPreconditionError, match="No classification inputs found in SignatureDef"):
        classes_model.classify("wrong_alias", ex)
    with pytest.raises(FailedPreconditionError, match='at least one of "classes" or "scores"'):
        classes_model.classify("no_known_output", ex)
    with pytest.raises(InvalidArgumentError, match=r"Expected Tensor shape: \[batch_size num_classes\] but got \[2\]"):
        classes_model.classify("flat_scores", ex)
    with pytest.raises(FailedPreconditionError, match="No regression outputs found in SignatureDef"):
        half_plus_two.regress("classify_x_to_y", ex)
    with pytest.raises(InvalidArgumentError, match=r"either \[batch_size\] or \[batch_size, 1\] but got \[1,2\]"):
        classes_model.regress("wide_regression", ex)
    with pytest.raises(InvalidArgumentError, match="Input is empty."):
        half_plus_two.regress("regress_x_to_y", [])


def test_serialized_examples_with_context_merge(half_plus_two, example):
    request = input_pb2.Input()
    listed = request.example_list_with_context
    listed.context.ParseFromString(example(x=10.0))
    listed.examples.add()  # takes x from the context
    listed.examples.add().ParseFromString(example(x=2.0))  # its own x wins
    serialized = serialized_examples(request)
    assert len(serialized) == 2
    np.testing.assert_array_equal(half_plus_two.regress("regress_x_to_y", serialized), np.float32([7.0, 3.0]))

    plain = input_pb2.Input()
    plain.example_list.examples.add().ParseFromString(example(x=4.0))
    assert serialized_examples(plain) == [example(x=4.0)]
    for empty in (input_pb2.Input(), input_pb2.Input(example_list=input_pb2.ExampleList())):
        with pytest.raises(InvalidArgumentError, match="Input is empty."):
            serialized_examples(empty)


def test_multi_inference_results_in_task_order(half_plus_two, example):
    tasks = [("regress_x_to_y2", REGRESS), ("classify_x_to_y", CLASSIFY), ("regress_x_to_y", REGRESS)]
    first, second, third = half_plus_two.multi_inference(tasks, [example(x=2.0), example(x=4.0)])
    np.testing.assert_array_equal(first, np.float32([4.0, 5.0]))
    np.testing.assert_array_equal(second.scores, np.float32([[3.0], [4.0]]))
    np.testing.assert_array_equal(third, np.float32([3.0, 4.0]))


def test_multi_inference_errors(half_plus_two, example):
    ex = [example(x=1.0)]
    with pytest.raises(InvalidArgumentError, match="Duplicate evaluation of signature: regress_x_to_y"):
        half_plus_two.multi_inference([("regress_x_to_y", REGRESS), ("regress_x_to_y", REGRESS)], ex)
    with pytest.raises(InvalidArgumentError, match="Requested signature not found in model graph: nope"):
        half_plus_two.multi_inference([("nope", REGRESS)], ex)
    with pytest.raises(UnimplementedError, match="Unsupported signature method_name: tensorflow/serving/predict"):
        half_plus_two.multi_inference([("serving_default", "tensorflow/serving/predict")], ex)
    # different inputs are all fed the examples (upstream's rule since it feeds a set of inputs):
    # a float input then fails at runtime, as in TF Serving's session
    with pytest.raises(InvalidArgumentError, match="Type mismatch: actual string vs. expect float"):
        half_plus_two.multi_inference([("regress_x_to_y", REGRESS), ("regress_x2_to_y3", REGRESS)], ex)
    with pytest.raises(InvalidArgumentError, match="Input is empty."):
        half_plus_two.multi_inference([("regress_x_to_y", REGRESS)], [])


def test_classify_on_float_input_signature_fails_at_runtime(half_plus_two, example):
    # regress_x2_to_y3 takes floats: feeding serialized examples is a runtime type error, as in TF Serving.
    with pytest.raises(InvalidArgumentError):
        half_plus_two.regress("regress_x2_to_y3", [example(x=1.0)])


def test_path_attribute(half_plus_two, half_plus_two_dir: Path):
    assert half_plus_two.path == half_plus_two_dir
