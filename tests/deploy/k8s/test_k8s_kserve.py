"""`render_kserve`: InferenceServices that the `kserve` package's own model classes accept.

`kserve` pins protobuf<7 and tfship's wire code needs protobuf>=7, so the two cannot share an
environment: the check runs in a separate venv (cached in $TFSHIP_CACHE, default
/var/cache/tfship, built once with pip) through kserve_roundtrip.py.
"""

from __future__ import annotations

import copy
import fcntl
import json
import os
import subprocess
import venv
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from tfship.deploy.k8s import RenderOptions, Resources, parse_storage, render_kserve

from tfship.errors import ConfigError

KSERVE_VERSION = "0.21.0"
ROUNDTRIP = Path(__file__).with_name("kserve_roundtrip.py")
IMAGE = "acme/models:1"


@pytest.fixture(scope="session")
def kserve_python() -> Path:
    """A venv's python with kserve installed (built on first use, then reused)."""
    cache = Path(os.environ.get("TFSHIP_CACHE", "/var/cache/tfship"))
    home = cache / f"venv-kserve-{KSERVE_VERSION}"
    python = home / "bin" / "python"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "venv-kserve.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ok = python.exists() and subprocess.run(
            [str(python), "-c", "import kserve.models, kubernetes"], capture_output=True, timeout=120
        ).returncode == 0
        if not ok:
            venv.create(home, with_pip=True, clear=True)
            proc = subprocess.run([str(python), "-m", "pip", "install", "-q", f"kserve=={KSERVE_VERSION}"],
                                  capture_output=True, text=True, timeout=900)
            if proc.returncode != 0:
                pytest.fail(f"could not install kserve=={KSERVE_VERSION} into {home}:\n{proc.stderr[-3000:]}")
    return python


def _roundtrip(python: Path, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    proc = subprocess.run([str(python), str(ROUNDTRIP)], input=json.dumps(docs), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


COMBINATIONS = {
    "uri-one-model": ("one", {"storage": "uri:gs://bucket/models"}),
    "pvc-two-models-ns": ("two", {"storage": "pvc:models", "namespace": "ml", "replicas": 1, "max_replicas": 4}),
    "uri-resources-uid": ("one", {"storage": "uri:s3://b/m", "resources": Resources("6", "12Gi", cpu_request="2"),
                                  "uid": 4242, "name": "scorer"}),
}


@pytest.mark.slow
def test_inference_services_round_trip_through_the_kserve_classes(
        kserve_python: Path, one_model: Path, two_models: Path) -> None:
    docs, expected_names = [], []
    for which, kwargs in COMBINATIONS.values():
        kwargs = dict(kwargs)
        kwargs["storage"] = parse_storage(kwargs["storage"])
        rendered = render_kserve(one_model if which == "one" else two_models, RenderOptions(image=IMAGE, **kwargs))
        docs += rendered.resources
        expected_names += [r["metadata"]["name"] for r in rendered.resources]
        for resource in rendered.resources:  # metadata is a plain ObjectMeta
            kubernetes_validate.validate({"apiVersion": "v1", "kind": "ConfigMap",
                                          "metadata": resource["metadata"]}, "1.37.0", strict=True)
    assert expected_names == ["half-plus-two", "half-plus-three", "half-plus-two", "scorer"]
    # the check can fail: a misspelled field and a wrongly typed one
    typo = copy.deepcopy(docs[0])
    typo["spec"]["predictor"]["model"]["securityContext"]["readOnlyRootFilesytem"] = True
    wrong_type = copy.deepcopy(docs[0])
    wrong_type["spec"]["predictor"]["minReplicas"] = "two"
    results = _roundtrip(kserve_python, [*docs, typo, wrong_type])
    assert results[:len(docs)] == [{"ok": True}] * len(docs)
    assert not results[-2]["ok"] and "readOnlyRootFilesytem" in results[-2]["error"]
    assert not results[-1]["ok"] and "minReplicas" in results[-1]["error"]


def test_inference_service_says_what_kserve_cannot_know(two_models: Path) -> None:
    rendered = render_kserve(two_models, RenderOptions(image=IMAGE, storage=parse_storage("pvc:models"),
                                                       resources=Resources("4", "8Gi")))
    by_name = {r["metadata"]["name"]: r for r in rendered.resources}
    predictor = by_name["half-plus-three"]["spec"]["predictor"]
    model = predictor["model"]
    assert rendered.resources[0]["apiVersion"] == "serving.kserve.io/v1beta1"
    assert model["modelFormat"] == {"name": "tensorflow"}
    assert model["storageUri"] == "pvc://models/half_plus_three"
    assert "--tensorflow_intra_op_parallelism=4" in model["args"]
    assert model["resources"]["limits"] == {"cpu": "4", "memory": "8Gi"}
    assert model["securityContext"]["readOnlyRootFilesystem"] is True
    assert model["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert predictor["securityContext"]["runAsNonRoot"] is True


def test_kserve_needs_storage_outside_the_image(one_model: Path) -> None:
    with pytest.raises(ConfigError, match="--kserve needs the models outside the image"):
        render_kserve(one_model, RenderOptions(image=IMAGE))


def test_kserve_refuses_options_its_runtime_owns(one_model: Path, batching_file: Path) -> None:
    with pytest.raises(ConfigError, match="not supported with --kserve"):
        render_kserve(one_model, RenderOptions(image=IMAGE, storage=parse_storage("uri:gs://b/m"),
                                               batching_file=batching_file))


def test_kserve_cli_writes_one_file_per_model(two_models: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner
    from tfship.cli import main

    result = CliRunner().invoke(main, ["k8s", "render", str(two_models), "--image", IMAGE, "--kserve",
                                       "--storage", "uri:gs://b/models", "--out", str(tmp_path / "ks")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "ks").iterdir()) == [
        "inferenceservice-half-plus-three.yaml", "inferenceservice-half-plus-two.yaml", "kustomization.yaml"]


