"""Build contexts for Dockerfile.serving, written without any Docker engine."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2
from tfship.cli import main
from tfship.deploy.docker import discover_models, dockerfile_template, write_build_context
from tfship.serving.config import read_batching_parameters_file, read_monitoring_config_file

from tfship.errors import ConfigError, InvalidArgumentError

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def models_dir(tmp_path: Path, tf_serving_testdata: Path) -> Path:
    """Two real TF Serving test models in the tfship layout, one with a manifest, plus noise."""
    models = tmp_path / "models"
    shutil.copytree(tf_serving_testdata / "saved_model_half_plus_two_2_versions", models / "half_plus_two")
    shutil.copytree(tf_serving_testdata / "saved_model_half_plus_three", models / "half_plus_three")
    extra = models / "half_plus_two" / "00000124" / "assets.extra"
    extra.mkdir(exist_ok=True)
    (extra / "tfship_manifest.json").write_text(json.dumps({"schema": 1, "model": "half_plus_two"}))
    (models / "half_plus_two" / ".tfship-tmp-000125").mkdir()  # an export in progress: skipped
    (models / "notes").mkdir()  # no versions: not a model
    return models


def test_repo_dockerfile_is_the_packaged_one() -> None:
    assert (REPO_ROOT / "Dockerfile.serving").read_text() == dockerfile_template()


def test_context_holds_models_config_and_labels(models_dir: Path, tmp_path: Path) -> None:
    ctx = write_build_context(models_dir, tmp_path / "ctx", base_image="tfship/base:test")
    assert ctx.dockerfile.startswith(dockerfile_template())
    assert (ctx.path / "Dockerfile").read_text() == ctx.dockerfile
    assert sorted(p.name for p in (ctx.path / "models").iterdir()) == ["half_plus_three", "half_plus_two"]
    assert sorted(p.name for p in (ctx.path / "models" / "half_plus_two").iterdir()) == ["00000123", "00000124"]
    assert (ctx.path / "models" / "half_plus_two" / "00000123" / "saved_model.pb").is_file()
    # the generated config is what the real tensorflow_model_server reads
    config = text_format.Parse(
        (ctx.path / "config" / "models.config").read_text(), model_server_config_pb2.ModelServerConfig()
    )
    assert {m.name: m.base_path for m in config.model_config_list.config} == {
        "half_plus_three": "/models/half_plus_three",
        "half_plus_two": "/models/half_plus_two",
    }
    manifest = models_dir / "half_plus_two" / "00000124" / "assets.extra" / "tfship_manifest.json"
    sha = hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert ctx.labels["io.tfship.models"] == "half_plus_three,half_plus_two"
    assert ctx.labels["io.tfship.model-versions"] == "half_plus_three:123;half_plus_two:123,124"
    assert ctx.labels["io.tfship.manifest-sha256"] == f"half_plus_two/124={sha}"
    assert ctx.labels["org.opencontainers.image.base.name"] == "tfship/base:test"
    assert f'io.tfship.manifest-sha256="half_plus_two/124={sha}"' in ctx.dockerfile
    assert ctx.dockerfile.rstrip().endswith('CMD ["--model_config_file=/etc/tfship/models.config"]')
    # world-readable for the non-root server, nothing group/world-writable
    for path in ctx.path.rglob("*"):
        assert path.stat().st_mode & 0o444 == 0o444 and not path.stat().st_mode & 0o022


def test_batching_and_monitoring_configs_and_flags(
    models_dir: Path, tmp_path: Path, tf_serving_testdata: Path
) -> None:
    ctx = write_build_context(
        models_dir, tmp_path / "ctx", batching_file=tf_serving_testdata / "batching_config.txt", monitoring=True
    )
    assert read_batching_parameters_file(ctx.path / "config" / "batching.config").max_batch_size == 128
    assert read_monitoring_config_file(ctx.path / "config" / "monitoring.config").prometheus_enabled
    assert ctx.command == (
        "--model_config_file=/etc/tfship/models.config",
        "--enable_batching",
        "--batching_parameters_file=/etc/tfship/batching.config",
        "--monitoring_config_file=/etc/tfship/monitoring.config",
    )
    assert f"CMD {json.dumps(list(ctx.command))}" in ctx.dockerfile


def test_single_model_base_path_is_accepted(tf_serving_testdata: Path) -> None:
    (model,) = discover_models(tf_serving_testdata / "saved_model_half_plus_three")
    assert (model.name, model.versions) == ("saved_model_half_plus_three", ("00000123",))


def test_bad_inputs_are_named(models_dir: Path, tmp_path: Path, tf_serving_testdata: Path) -> None:
    with pytest.raises(ConfigError, match=r"No models found .*`tfship export"):
        write_build_context(tmp_path / "models" / "notes", tmp_path / "ctx1")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "x").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        write_build_context(models_dir, occupied)
    with pytest.raises(InvalidArgumentError, match="Invalid protobuf file"):
        write_build_context(models_dir, tmp_path / "ctx2", batching_file=tf_serving_testdata / "bad_model_config.txt")
    assert not (tmp_path / "ctx2" / "models").exists()  # failed before copying


def test_cli_context_dir_needs_no_docker(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")  # any use would fail
    result = CliRunner().invoke(main, ["build", str(models_dir), "--context-dir", str(tmp_path / "ctx")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ctx" / "Dockerfile").is_file()
    assert "--build-arg BASE_IMAGE=" in result.output


def test_cli_build_without_engine_says_how_to_fix(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("docker")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    result = CliRunner().invoke(main, ["build", str(models_dir), "--tag", "tfship-test/none:1"])
    assert result.exit_code == 3, result.output
    assert "Cannot reach the Docker engine" in result.output and "DOCKER_HOST" in result.output


def test_cli_build_needs_tag_or_context_dir(models_dir: Path) -> None:
    result = CliRunner().invoke(main, ["build", str(models_dir)])
    assert result.exit_code == 2 and "--tag" in result.output
