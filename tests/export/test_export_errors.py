"""Bad input gets a clear error that names the problem and the fix, and changes nothing on disk."""

from __future__ import annotations

import hashlib
from pathlib import Path

import keras
import numpy as np
import pytest
from export_helpers import version_names
from tfship.export import export_model

from tfship.errors import (
    ExportError,
    ModelSourceError,
    SignatureError,
    VerificationError,
    VersionExistsError,
)


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("name", ["", "a/b", "../escape", "..", "sp ace", "x\\y", "naïve"])
def test_invalid_model_name(zoo, base, name):
    with pytest.raises(ExportError, match="invalid model name.*letters, digits"):
        export_model(zoo("regression").model, base, name)
    assert list(base.iterdir()) == []


def test_missing_path(base, tmp_path):
    with pytest.raises(ModelSourceError, match="does not exist"):
        export_model(tmp_path / "nope.keras", base, "m")
    assert list(base.iterdir()) == []


@pytest.mark.parametrize(("filename", "content", "message"), [
    ("notes.txt", b"hello", "not a model file"),
    ("fake.keras", b"not a zip", "not a .keras archive"),
    ("fake.h5", b"not hdf5", "not an HDF5 file"),
])
def test_file_that_is_not_a_model(base, tmp_path, filename, content, message):
    path = tmp_path / filename
    path.write_bytes(content)
    with pytest.raises(ModelSourceError, match=message):
        export_model(path, base, "m")
    assert list(base.iterdir()) == []


def test_directory_that_is_not_a_saved_model(base, tmp_path):
    with pytest.raises(ModelSourceError, match="without saved_model.pb"):
        export_model(tmp_path, base, "m")


def test_weights_without_architecture_says_how_to_pass_it(zoo, base):
    with pytest.raises(ModelSourceError, match="architecture='yourmodule:build_model'"):
        export_model(zoo("mlp").files["weights"], base, "m")


def test_weights_with_wrong_architecture(zoo, base):
    with pytest.raises(ModelSourceError, match="cannot load weights"):
        export_model(zoo("mlp").files["weights"], base, "m", architecture="export_zoo:build_cnn")
    assert version_names(base / "m") == []


def test_missing_custom_object_names_class_and_fix(base, tmp_path):
    class LocalScale(keras.layers.Layer):  # not importable by name, not registered
        def call(self, x):
            return x * 2.0

    model = keras.Sequential([keras.Input((2,), name="x"), LocalScale(name="scale")])
    path = tmp_path / "custom.keras"
    model.save(path)
    with pytest.raises(ModelSourceError) as info:
        export_model(path, base, "custom")
    text = str(info.value)
    assert "LocalScale" in text and "custom_objects=" in text and "--custom-object" in text
    assert list(base.iterdir()) == []
    result = export_model(path, base, "custom", custom_objects={"LocalScale": LocalScale})
    assert result.version == 1


def test_lambda_layer_needs_explicit_unsafe_flag(base, tmp_path):
    model = keras.Sequential([keras.Input((2,), name="x"), keras.layers.Lambda(lambda t: t + 1.0)])
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(ModelSourceError, match="safe_mode=False.*--unsafe"):
        export_model(path, base, "lam")
    assert list(base.iterdir()) == []
    result = export_model(path, base, "lam", safe_mode=False, samples={"x": np.ones((2, 2), "float32")})
    from tfship.manifest import load_samples

    np.testing.assert_allclose(load_samples(result.path)[1][result.signature.outputs[0].name], 2.0)


@pytest.mark.parametrize("layout", ["file", "under-file"])
def test_unwritable_base_dir(zoo, tmp_path, layout):
    blocker = tmp_path / "blocker"
    blocker.write_text("i am a file")
    target = blocker if layout == "file" else blocker / "sub"
    with pytest.raises(ExportError, match="cannot write to base dir.*writable directory"):
        export_model(zoo("regression").model, target, "m")
    assert blocker.read_text() == "i am a file"


def test_existing_explicit_version_is_never_overwritten(zoo, base):
    model = zoo("regression").model
    export_model(model, base, "m", version=7)
    (base / "m" / "0003").mkdir()  # leading zeros: this is version 3
    before = _snapshot(base)
    for version in (7, 3):
        with pytest.raises(VersionExistsError, match=f"version {version} .* already exists.*never overwrites"):
            export_model(model, base, "m", version=version)
    assert _snapshot(base) == before
    assert export_model(model, base, "m").version == 8


@pytest.mark.parametrize("version", [0, -1, True, 2**63])
def test_invalid_explicit_version(zoo, base, version):
    with pytest.raises(ExportError, match="invalid version"):
        export_model(zoo("regression").model, base, "m", version=version)


def test_unbuilt_subclassed_model_says_pass_samples_or_signature(base):
    from export_zoo import build_subclassed_unbuilt

    with pytest.raises(SignatureError) as info:
        export_model(build_subclassed_unbuilt(), base, "sub")
    assert "samples=" in str(info.value) and "input_signature=" in str(info.value)
    assert list(base.iterdir()) == []


def test_unbuilt_subclassed_model_with_samples_or_signature(base):
    import tensorflow as tf
    from export_zoo import build_subclassed_unbuilt

    xs = np.random.default_rng(1).standard_normal((3, 6)).astype("float32")
    by_samples = export_model(build_subclassed_unbuilt(), base, "sub", samples={"features": xs})
    assert [t.name for t in by_samples.signature.inputs] == ["features"]
    by_spec = export_model(build_subclassed_unbuilt(), base, "sub",
                           input_signature=[tf.TensorSpec([None, 6], tf.float32, name="vec")])
    assert (by_spec.version, by_spec.signature.inputs[0].name) == (2, "vec")
    assert by_spec.signature.inputs[0].shape == [-1, 6]


def test_unbuilt_architecture_with_weights_file(zoo, base):
    xs = np.ones((2, 6), "float32")
    result = export_model(zoo("subclassed").files["weights"], base, "sub", samples=xs,
                          architecture="export_zoo:build_subclassed_unbuilt")
    from tfship.manifest import load_samples

    np.testing.assert_allclose(load_samples(result.path)[1]["output_0"],
                               zoo("subclassed").model(xs).numpy(), rtol=1e-5, atol=1e-6)


def test_verification_mismatch_publishes_nothing(base):
    from export_zoo import build_jitter

    with pytest.raises(VerificationError) as info:
        export_model(build_jitter(), base, "jitter")
    text = str(info.value)
    assert "noisy: max abs diff" in text and "max rel diff" in text and "nothing was published" in text
    # No version, no staging dir, not even the model dir this export created.
    assert list(base.iterdir()) == []


@pytest.mark.parametrize(("samples", "message"), [
    ({"nope": np.zeros((2, 1), "float32")}, r"unknown \['nope'\].*missing \['x'\]"),
    ({"x": np.zeros((2,), "float32")}, "expects rank 2"),
])
def test_samples_that_do_not_fit_the_signature(zoo, base, samples, message):
    with pytest.raises(SignatureError, match=message):
        export_model(zoo("regression").model, base, "m", samples=samples)
    assert list(base.iterdir()) == []
