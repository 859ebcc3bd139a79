"""What an export leaves on disk: warmup records TF Serving can replay, a TF-free manifest and
samples, and `inspect` that reads tfship and foreign (TF Serving testdata) model dirs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from tfship.export import export_model, inspect_model_dir, load_samples, read_manifest
from tfship.export.warmup import read_warmup_requests

from tfship.manifest import MANIFEST_PATH, SAMPLES_PATH, WARMUP_PATH, file_checksums
from tfship.wire import dtypes
from tfship.wire.tensor import to_ndarray


@pytest.mark.parametrize("model_name", ["two_in_two_out", "string_lookup"])
def test_warmup_records_are_prediction_logs_matching_the_signature(zoo, base, model_name):
    result = export_model(zoo(model_name).model, base, "w")
    logs = read_warmup_requests(result.path / WARMUP_PATH)
    assert len(logs) == 2  # the sample batch and a batch of one
    inputs, _ = load_samples(result.path)
    by_name = {t.name: t for t in result.signature.inputs}
    for log, batch in zip(logs, (4, 1), strict=True):
        assert log.WhichOneof("log_type") == "predict_log"
        request = log.predict_log.request
        assert request.model_spec.name == "w"
        assert request.model_spec.signature_name == "serving_default"
        assert set(request.inputs) == set(by_name)
        for name, proto in request.inputs.items():
            assert dtypes.by_enum(proto.dtype).name == by_name[name].dtype
            array = to_ndarray(proto)
            assert array.shape[0] == batch and list(array.shape[1:]) == by_name[name].shape[1:]
            np.testing.assert_array_equal(array, inputs[name][:batch])


def test_warmup_can_be_disabled(zoo, base):
    result = export_model(zoo("regression").model, base, "nw", warmup=False)
    assert not (result.path / WARMUP_PATH).exists()


def test_manifest_content(zoo, base):
    import keras
    import tensorflow as tf

    result = export_model(zoo("mlp").model, base, "mnist", tolerances={"float32": (1e-4, 1e-3)})
    raw = json.loads((result.path / MANIFEST_PATH).read_text())
    assert raw["schema"] == "tfship.manifest" and raw["schema_version"] == 1
    assert (raw["model_name"], raw["version"]) == ("mnist", 1)
    assert raw["created"].endswith("Z")
    assert (raw["tensorflow_version"], raw["keras_version"]) == (tf.__version__, keras.__version__)
    assert raw["signature"]["inputs"] == [
        {"name": "image", "dtype": "DT_FLOAT", "numpy_dtype": "float32", "shape": [-1, 28, 28]}]
    assert raw["tolerances"]["float32"] == {"atol": 1e-4, "rtol": 1e-3}
    assert raw["files"] == file_checksums(result.path)
    assert {"saved_model.pb", SAMPLES_PATH, WARMUP_PATH} <= set(raw["files"])
    assert any(k.startswith("variables/") for k in raw["files"])


def test_manifest_and_samples_read_without_tensorflow(zoo, base):
    result = export_model(zoo("string_lookup").model, base, "colors")
    code = (
        "import sys; from tfship.export import read_manifest, load_samples, verify_checksums;"
        f"m = read_manifest({str(result.path)!r}); i, o = load_samples({str(result.path)!r});"
        "assert verify_checksums(" + repr(str(result.path)) + ").ok;"
        "assert i['color'].dtype == object and isinstance(i['color'].flat[0], bytes);"
        "print(m.signature.inputs[0].dtype, sorted(o));"
        "assert 'tensorflow' not in sys.modules, 'manifest reading imported TensorFlow'"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["DT_STRING", "['logits']"]


def test_inspect_verify_detects_tampered_missing_and_extra_files(zoo, base):
    model = zoo("regression").model
    for _ in range(3):
        export_model(model, base, "m")
    model_dir = base / "m"
    assert inspect_model_dir(model_dir, verify=True).ok
    (model_dir / "1" / "variables" / "variables.data-00000-of-00001").write_bytes(b"tampered")
    (model_dir / "2" / SAMPLES_PATH).unlink()
    (model_dir / "3" / "extra.txt").write_text("who put this here")
    report = inspect_model_dir(model_dir, verify=True)
    problems = {v.version: v.problems for v in report.versions}
    assert "modified: variables/variables.data-00000-of-00001" in problems[1][0]
    assert f"missing: {SAMPLES_PATH}" in problems[2][0]
    assert "unexpected: extra.txt" in problems[3][0]
    assert not report.ok
    assert inspect_model_dir(model_dir, verify=False).ok  # checksums only with verify


def test_inspect_reports_incomplete_version(zoo, base):
    result = export_model(zoo("regression").model, base, "m")
    (result.path / "saved_model.pb").unlink()
    (version,) = inspect_model_dir(base / "m").versions
    assert any("not a SavedModel" in p for p in version.problems)


@pytest.mark.parametrize(("model", "versions", "serving_default"), [
    ("saved_model_half_plus_two_cpu", [123], "x:DT_FLOAT[-1,1] -> y:DT_FLOAT[-1,1]"),
    ("saved_model_half_plus_two_tf2_cpu", [123], "x:DT_FLOAT[1] -> y:DT_FLOAT[1]"),
    ("saved_model_half_plus_three", [123], "x:DT_FLOAT[] -> y:DT_FLOAT[]"),
    ("saved_model_half_plus_two_2_versions", [123, 124], "x:DT_FLOAT[-1,1] -> y:DT_FLOAT[-1,1]"),
    ("matrix_half_plus_two", [1], "x:DT_FLOAT[-1,3,3] -> y:DT_FLOAT[-1,3,3]"),
])
def test_inspect_reads_real_tf_serving_models(tf_serving_testdata, model, versions, serving_default):
    report = inspect_model_dir(tf_serving_testdata / model, verify=True)
    assert [v.version for v in report.versions] == versions
    for v in report.versions:
        assert v.ok and v.manifest is None
        assert v.signatures["serving_default"].summary() == serving_default
    if model == "saved_model_half_plus_two_cpu":
        sigs = report.versions[0].signatures
        assert sigs["classify_x_to_y"].method == "tensorflow/serving/classify"
        assert sigs["classify_x_to_y"].inputs[0].shape is None  # unknown rank


def test_inspect_flags_the_unloadable_session_bundle(tf_serving_testdata):
    report = inspect_model_dir(tf_serving_testdata / "bad_half_plus_two")
    assert [v.version for v in report.versions] == [123] and not report.ok


def test_read_manifest_errors_are_clear(tmp_path):
    from tfship.errors import ExportError

    with pytest.raises(ExportError, match="not exported by tfship"):
        read_manifest(tmp_path)
    (tmp_path / "assets.extra").mkdir()
    (tmp_path / MANIFEST_PATH).write_text(json.dumps({"schema": "tfship.manifest", "schema_version": 99}))
    with pytest.raises(ExportError, match="upgrade tfship"):
        read_manifest(tmp_path)



@pytest.mark.parametrize("model", ["saved_model_half_plus_two_cpu", "saved_model_half_plus_two_tf2_cpu"])
def test_saved_model_dir_from_tf_serving_testdata(tf_serving_testdata, base, model):
    """A foreign SavedModel (TF1 and TF2) is republished as is, plus manifest, samples and warmup."""
    source = tf_serving_testdata / model / "00000123"
    result = export_model(source, base, "hp2")
    assert result.signature.summary() == inspect_model_dir(tf_serving_testdata / model).versions[0] \
        .signatures["serving_default"].summary()
    inputs, outputs = load_samples(result.path)
    np.testing.assert_allclose(outputs["y"], 0.5 * inputs["x"] + 2.0, rtol=1e-6)
    report = inspect_model_dir(base / "hp2", verify=True)
    assert report.ok and set(report.versions[0].signatures) >= {"serving_default", "regress_x_to_y"}


def test_model_dir_instead_of_version_dir_gets_a_hint(tf_serving_testdata, base):
    from tfship.errors import ModelSourceError

    with pytest.raises(ModelSourceError, match="pass one version dir"):
        export_model(tf_serving_testdata / "saved_model_half_plus_two_cpu", base, "hp2")


def test_inspect_accepts_a_version_dir(zoo, base):
    result = export_model(zoo("regression").model, base, "m")
    report = inspect_model_dir(result.path, verify=True)
    assert report.name == "m" and [v.version for v in report.versions] == [1] and report.ok
