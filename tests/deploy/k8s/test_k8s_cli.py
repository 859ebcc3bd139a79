"""`tfship k8s render`: help that teaches, YAML on stdout or a kustomize dir, exit 2 on bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from tfship.cli import main


def _run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, ["k8s", "render", *args])


def test_help_teaches_the_options_and_the_workflow() -> None:
    result = _run("--help")
    assert result.exit_code == 0
    for text in ("--image", "--storage", "baked|pvc:CLAIM|uri:URI", "--replicas", "--kserve",
                 "--monitoring", "kubectl apply -k", "AVAILABLE"):
        assert text in result.output


def test_yaml_on_stdout_parses_into_the_resources(one_model: Path) -> None:
    result = _run(str(one_model), "--image", "acme/models:1", "--replicas", "3")
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(result.stdout))
    assert [d["kind"] for d in docs][:2] == ["Deployment", "Service"]
    assert next(d for d in docs if d["kind"] == "HorizontalPodAutoscaler")["spec"]["minReplicas"] == 3


def test_out_writes_a_kustomize_directory(two_models: Path, tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    result = _run(str(two_models), "--image", "acme/models:1", "--storage", "pvc:models",
                  "--monitoring", "-n", "ml", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "kubectl apply -k" in result.stderr
    kustomization = yaml.safe_load((out / "kustomization.yaml").read_text())
    assert "servicemonitor.yaml" in kustomization["resources"]
    assert all((out / f).is_file() for f in kustomization["resources"])


@pytest.mark.parametrize(("args", "message"), [
    (["--image", "acme/models:1", "--replicas", "0"], "at least 1 replica"),
    (["--image", "acme models"], "is not an image reference"),
    (["--image", "acme/models:1", "--storage", "nfs:/x"], "--storage 'nfs:/x' is not understood"),
    (["--image", "acme/models:1", "--cpu", "two"], "CPU quantity"),
    (["--image", "acme/models:1", "--kserve"], "--kserve needs the models outside the image"),
])
def test_bad_options_exit_2_with_a_clear_error(one_model: Path, args: list[str], message: str) -> None:
    result = _run(str(one_model), *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_a_models_dir_without_models_exits_2(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = _run(str(tmp_path / "empty"), "--image", "acme/models:1")
    assert result.exit_code == 2
    assert "No models found" in result.stderr


def test_missing_image_is_a_usage_error(one_model: Path) -> None:
    result = _run(str(one_model))
    assert result.exit_code == 2
    assert "--image" in result.stderr


@pytest.mark.parametrize(("image", "warned"), [("acme/models", True), ("acme/models:latest", True),
                                               ("localhost:5000/models", True), ("acme/models:1", False),
                                               ("acme/models@sha256:" + "ab" * 32, False)])
def test_mutable_image_references_are_warned_about(one_model: Path, image: str, warned: bool) -> None:
    result = _run(str(one_model), "--image", image)
    assert result.exit_code == 0
    assert ("immutable tag" in result.stderr) is warned
