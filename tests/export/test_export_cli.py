"""`tfship export` and `tfship inspect` through click's CliRunner."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from tfship.cli import main
from tfship.export import load_samples, read_manifest


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_export_then_inspect(runner, zoo, base):
    entry = zoo("mlp")
    result = runner.invoke(main, ["export", str(entry.files["keras"]), "--base", str(base), "--name", "mnist"])
    assert result.exit_code == 0, result.output
    assert f"exported mnist version 1 to {base.absolute() / 'mnist' / '1'}" in result.output
    assert "serving_default: image:DT_FLOAT[-1,28,28] -> probs:DT_FLOAT[-1,10]" in result.output
    assert "verified probs: max abs diff" in result.output

    result = runner.invoke(main, ["export", str(entry.files["weights"]), "--base", str(base),
                                  "--name", "mnist", "--architecture", entry.builder, "--version", "5",
                                  "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["version"] == 5

    result = runner.invoke(main, ["inspect", str(base / "mnist"), "--verify"])
    assert result.exit_code == 0, result.output
    assert "2 version(s)" in result.output and "version 5 [OK]" in result.output
    assert "(checksums verified)" in result.output

    (base / "mnist" / "5" / "saved_model.pb").write_bytes(b"tampered")
    result = runner.invoke(main, ["inspect", str(base / "mnist"), "--verify", "--json"])
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert [v["ok"] for v in report["versions"]] == [True, False]


def test_existing_version_is_a_usage_error(runner, zoo, base):
    args = ["export", str(zoo("regression").files["keras"]), "--base", str(base), "--name", "m",
            "--version", "1"]
    assert runner.invoke(main, args).exit_code == 0
    result = runner.invoke(main, args)
    assert result.exit_code == 2
    assert "error: version 1 of model 'm' already exists" in result.output


def test_custom_object_option(runner, base, tmp_path):
    from export_zoo import Offset  # not registered with Keras

    model = keras.Sequential([keras.Input((2,), name="x"), Offset(3.0, name="off")])
    path = tmp_path / "offset.keras"
    model.save(path)
    args = ["export", str(path), "--base", str(base), "--name", "s"]
    result = runner.invoke(main, args)
    assert result.exit_code == 2
    assert "custom object 'Offset'" in result.output and "--custom-object yourmodule:Offset" in result.output
    result = runner.invoke(main, [*args, "--custom-object", "export_zoo:Offset"])
    assert result.exit_code == 0, result.output
    _, outputs = load_samples(base / "s" / "1")
    inputs, _ = load_samples(base / "s" / "1")
    np.testing.assert_allclose(outputs["off"], inputs["x"] + 3.0)
    result = runner.invoke(main, [*args, "--custom-object", "export_zoo:NoSuchThing"])
    assert result.exit_code == 2 and "has no 'NoSuchThing'" in result.output


def test_samples_and_tolerance_options(runner, zoo, base, tmp_path):
    samples = tmp_path / "s.npz"
    np.savez(samples, x=np.array([[1.0], [2.0]], "float32"))
    result = runner.invoke(main, ["export", str(zoo("regression").files["h5"]), "--base", str(base),
                                  "--name", "r", "--samples", str(samples),
                                  "--tolerance", "float32=1e-3,1e-2", "--no-warmup"])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(base / "r" / "1")
    assert manifest.sample_count == 2
    assert (manifest.tolerances["float32"].atol, manifest.tolerances["float32"].rtol) == (1e-3, 1e-2)
    assert "tf_serving_warmup_requests" not in " ".join(manifest.files)

    result = runner.invoke(main, ["export", str(zoo("regression").files["h5"]), "--base", str(base),
                                  "--name", "r", "--tolerance", "float32:1e-3"])
    assert result.exit_code == 2 and "DTYPE=ATOL,RTOL" in result.output


def test_bad_inputs_exit_2_with_message(runner, base, tmp_path):
    result = runner.invoke(main, ["export", str(tmp_path / "missing.keras"), "--base", str(base),
                                  "--name", "m"])
    assert result.exit_code == 2 and "does not exist" in result.output
    result = runner.invoke(main, ["export", str(tmp_path), "--base", str(base), "--name", "a/b"])
    assert result.exit_code == 2 and "invalid model name" in result.output
    result = runner.invoke(main, ["inspect", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_inspect_shared_testdata(runner, tf_serving_testdata):
    result = runner.invoke(main, ["inspect", str(tf_serving_testdata / "saved_model_half_plus_two_cpu")])
    assert result.exit_code == 0, result.output
    assert "version 123 [OK] 00000123/  no tfship manifest" in result.output
    assert "serving_default (tensorflow/serving/predict): x:DT_FLOAT[-1,1] -> y:DT_FLOAT[-1,1]" in result.output
    assert "classify_x_to_y (tensorflow/serving/classify)" in result.output
    result = runner.invoke(main, ["inspect", str(tf_serving_testdata / "bad_half_plus_two")])
    assert result.exit_code == 1 and "not a SavedModel" in result.output
