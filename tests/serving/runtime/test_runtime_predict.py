"""Loading SavedModels the TF Serving way and Predict semantics (TF Serving compat spec §3.3, 5.1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tfship.serving.runtime import Servable

from tfship.errors import (
    Code,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    ServingError,
    UnavailableError,
    UnimplementedError,
)


def f32(value) -> np.ndarray:
    return np.asarray(value, np.float32)


# --------------------------------------------------------------------------- loading


def test_tf1_model_computes_half_plus_two(half_plus_two):
    out = half_plus_two.predict("", {"x": f32([[1], [2], [3], [4]])})
    np.testing.assert_array_equal(out["y"], f32([[2.5], [3.0], [3.5], [4.0]]))
    assert out["y"].dtype == np.float32
    assert set(half_plus_two.signature_defs) == {
        "serving_default", "classify_x_to_y", "regress_x_to_y", "regress_x_to_y2", "regress_x2_to_y3",
    }
    assert (half_plus_two.name, half_plus_two.version) == ("half_plus_two", 123)


@pytest.mark.parametrize(
    "x, y",
    [([1.0, 2.0, 3.0], [2.5, 3.0, 3.5]), ([[1, 2], [3, 4]], [[2.5, 3.0], [3.5, 4.0]])],
    ids=["rank1", "2x2"],
)
def test_feeds_are_not_checked_against_placeholder_shape(half_plus_two, x, y):
    # x:0 is declared [-1,1]; TF Serving feeds by tensor name without a static shape check.
    np.testing.assert_array_equal(half_plus_two.predict("serving_default", {"x": f32(x)})["y"], f32(y))


def test_half_plus_three_loads_and_takes_scalar(half_plus_three, example):
    # tf.saved_model.load rejects this model; TF Serving (and we) do not.
    out = half_plus_three.predict("", {"x": f32(2.0)})
    assert out["y"].shape == () and out["y"] == 4.0
    np.testing.assert_array_equal(half_plus_three.predict("", {"x": f32([1, 2, 5])})["y"], f32([3.5, 4, 5.5]))
    np.testing.assert_array_equal(
        half_plus_three.regress("tensorflow/serving/regress", [example(x=1.0), example(x=2.0)]), f32([3.5, 4.0])
    )


def test_tf2_model_with_defaults_and_init_op_signature(half_plus_two_tf2):
    assert "__saved_model_init_op" in half_plus_two_tf2.signature_defs
    np.testing.assert_array_equal(half_plus_two_tf2.predict("", {"x": f32([2.0])})["y"], f32([3.0]))
    # serving_default has a `defaults` entry x=0.0, so x may be left out.
    np.testing.assert_array_equal(half_plus_two_tf2.predict("", {})["y"], f32([2.0]))
    np.testing.assert_array_equal(
        half_plus_two_tf2.predict("regress_x2_to_y3", {"inputs": f32([2.0])})["outputs"], f32([4.0])
    )


def test_both_versions_of_two_version_model(tf_serving_testdata):
    base = tf_serving_testdata / "saved_model_half_plus_two_2_versions"
    for version in (123, 124):
        servable = Servable.load("two", version, base / f"{version:08d}")
        try:
            out = servable.predict("", {"x": f32([[1], [2]])})
            np.testing.assert_array_equal(out["y"], f32([[2.5], [3.0]]))
            out = servable.predict("classify_x2_to_y3", {"inputs": f32([[2]])})
            np.testing.assert_array_equal(out["scores"], f32([[4.0]]))
        finally:
            servable.close()


def test_matrix_model_without_variables(tf_serving_testdata):
    servable = Servable.load("matrix", 1, tf_serving_testdata / "matrix_half_plus_two" / "1")
    try:
        x = np.arange(9, dtype=np.float32).reshape(1, 3, 3)
        np.testing.assert_array_equal(servable.predict("", {"x": x})["y"], 0.5 * x + 2)
    finally:
        servable.close()


def test_keras3_exports_match_in_memory_model(keras_exports):
    path, model = keras_exports["mlp"]
    servable = Servable.load("mlp", 1, path)
    try:
        (alias,) = servable.signature_defs["serving_default"].inputs
        x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
        (out,) = servable.predict("", {alias: x}).values()
        np.testing.assert_allclose(out, np.asarray(model(x)), rtol=1e-6, atol=1e-6)
    finally:
        servable.close()


def test_keras3_string_lookup_tables_are_initialized(keras_exports):
    path, model = keras_exports["lookup"]
    servable = Servable.load("lookup", 1, path)
    try:
        (alias,) = servable.signature_defs["serving_default"].inputs
        words = np.array([[b"dog"], [b"cat"], [b"zebra"]], dtype=object)
        (out,) = servable.predict("", {alias: words}).values()
        np.testing.assert_array_equal(out, np.asarray(model(np.array([["dog"], ["cat"], ["zebra"]]))))
        assert out.reshape(-1).tolist() == [2, 1, 0]
    finally:
        servable.close()


def test_legacy_session_bundle_is_unimplemented(tf_serving_testdata):
    with pytest.raises(UnimplementedError, match="Session Bundle is deprecated and removed."):
        Servable.load("bad", 123, tf_serving_testdata / "bad_half_plus_two" / "00000123")


def test_missing_saved_model_is_not_found(tmp_path):
    with pytest.raises(NotFoundError, match="saved_model.pb"):
        Servable.load("none", 1, tmp_path)
    with pytest.raises(NotFoundError):
        Servable.load("none", 1, tmp_path / "does-not-exist")


def test_unknown_tags_are_not_found(half_plus_two_dir):
    from tfship.serving.runtime import LoadOptions

    with pytest.raises(NotFoundError, match="meta graph def matching supplied tags"):
        Servable.load("h", 123, half_plus_two_dir, LoadOptions(tags=("gpu",)))


# --------------------------------------------------------------------------- predict errors


def test_unknown_signature_is_failed_precondition(half_plus_two):
    with pytest.raises(FailedPreconditionError, match='Serving signature key "nope" not found.'):
        half_plus_two.predict("nope", {"x": f32([[1]])})


def test_input_set_mismatch(half_plus_two, half_plus_two_tf2):
    with pytest.raises(InvalidArgumentError) as err:
        half_plus_two.predict("", {"x": f32([[1]]), "z": f32([[1]])})
    assert err.value.message == (
        "input size does not match signature: 2!=1 len({x,z}) != len({x}). "
        "Sent extra: {z}. Missing but required: {}."
    )
    with pytest.raises(InvalidArgumentError, match="input size does not match signature: 0!=1"):
        half_plus_two.predict("", {})
    # defaults excuse missing inputs, never extra ones
    with pytest.raises(InvalidArgumentError, match="Sent extra: {z}"):
        half_plus_two_tf2.predict("", {"x": f32([1]), "z": f32([1])})


def test_unknown_alias(half_plus_two):
    with pytest.raises(InvalidArgumentError) as err:
        half_plus_two.predict("", {"q": f32([[1]])})
    assert err.value.message == "input tensor alias not found in signature: q. Inputs expected to be in the set {x}."


def test_dtype_mismatch_is_invalid_argument(half_plus_two):
    with pytest.raises(InvalidArgumentError, match=r"Expects arg\[x\] to be float but int32 is provided"):
        half_plus_two.predict("", {"x": np.array([[1]], np.int32)})


def test_output_filter(half_plus_two_tf2):
    out = half_plus_two_tf2.predict("", {"x": f32([1.0])}, output_filter=["y"])
    assert list(out) == ["y"]
    with pytest.raises(InvalidArgumentError) as err:
        half_plus_two_tf2.predict("", {"x": f32([1.0])}, output_filter=["nope"])
    assert err.value.message == (
        "output tensor alias not found in signature: nope Outputs expected to be in the set {y}."
    )
    with pytest.raises(InvalidArgumentError, match="duplicate output tensor alias: y"):
        half_plus_two_tf2.predict("", {"x": f32([1.0])}, output_filter=["y", "y"])


def test_runtime_op_error_keeps_tf_code_and_message(keras_exports):
    path, _ = keras_exports["mlp"]
    servable = Servable.load("mlp", 1, path)
    try:
        (alias,) = servable.signature_defs["serving_default"].inputs
        with pytest.raises(InvalidArgumentError, match="Matrix size-incompatible|In\\[0\\] mismatch|dimension"):
            servable.predict("", {alias: np.ones((2, 5), np.float32)})
        # the servable keeps serving after a bad request
        assert servable.predict("", {alias: np.ones((2, 4), np.float32)})
    finally:
        servable.close()


def test_timeout_is_deadline_exceeded(gated_model_dir):
    servable = Servable.load("gated", 1, gated_model_dir)
    try:
        with pytest.raises(DeadlineExceededError):
            servable.predict("gated", {"x": f32([1.0])}, timeout=0.2)
        np.testing.assert_array_equal(servable.predict("", {"x": f32([1.5])}, timeout=5)["y"], f32([3.0]))
    finally:
        servable.close()


def test_closed_servable_is_unavailable(half_plus_two_dir):
    servable = Servable.load("h", 123, half_plus_two_dir)
    servable.close()
    servable.close()  # idempotent
    with pytest.raises(UnavailableError):
        servable.predict("", {"x": f32([[1]])})


def test_concurrent_callers_get_their_own_results(half_plus_two):
    from concurrent.futures import ThreadPoolExecutor

    def call(i: int) -> bool:
        x = f32([[i], [i + 1]])
        return bool(np.array_equal(half_plus_two.predict("", {"x": x})["y"], 0.5 * x + 2))

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(call, range(400)))


def test_load_path_may_be_str(half_plus_two_dir):
    servable = Servable.load("h", 123, Path(str(half_plus_two_dir)))
    assert servable.path == half_plus_two_dir
    servable.close()


def test_unreadable_saved_model_is_a_clear_load_error(tmp_path):
    (tmp_path / "saved_model.pb").write_bytes(b"\x00garbage, not a SavedModel proto")
    with pytest.raises(ServingError, match="Failed to load SavedModel at") as err:
        Servable.load("broken", 1, tmp_path)
    assert err.value.code in (Code.INVALID_ARGUMENT, Code.DATA_LOSS)
