"""check_parity and `tfship smoke` / `tfship status` against the served Keras export."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tfship.client import check_parity
from tfship.deploy.launch import free_port

from tfship.errors import ParityError


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tfship", *args], capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="session")
def keras_v1(model_base: Path) -> Path:
    return model_base / "keras" / "1"


def test_parity_with_the_export_manifest(client: Any, keras_v1: Path) -> None:
    report = check_parity(client, "keras", keras_v1)
    assert report.ok, report.text()
    assert report.version == 1 and report.rows == 16
    (out,) = report.outputs
    assert out.dtype == "float32" and out.max_abs <= 1e-5 and out.worst_row is not None
    assert report.text().startswith(f"PASS keras v1 via {client.url}: 16 rows")


def test_parity_mismatch_names_the_worst_row(client: Any, keras_v1: Path) -> None:
    from tfship.manifest import load_samples

    inputs, outputs = load_samples(keras_v1)
    (name,) = outputs
    tampered = outputs[name].copy()
    tampered[5, 1] += 0.01
    report = check_parity(client, "keras", (inputs, {name: tampered}))
    assert not report.ok
    assert report.outputs[0].worst_row == 5
    assert abs(report.outputs[0].max_abs - 0.01) < 1e-4
    assert "MISMATCH" in report.text()
    with pytest.raises(ParityError, match="FAIL keras"):
        check_parity(client, "keras", (inputs, {name: tampered}), raise_on_mismatch=True)


def test_parity_against_an_in_memory_keras_model(grpc_client: Any) -> None:
    from client_test_models import build_keras_model

    x = np.random.default_rng(9).normal(size=(40, 4)).astype(np.float32)
    report = check_parity(grpc_client, "keras", build_keras_model(), inputs=x)
    assert report.ok, report.text()
    assert report.rows == 40


def test_smoke_cli_both_transports(server: Any, keras_v1: Path, tmp_path: Path) -> None:
    ok = _cli("smoke", "--url", server.grpc_url, "--url", server.rest_url, "--model", "keras",
              "--manifest", str(keras_v1))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.count("PASS keras v1") == 2

    from tfship.export.manifest import save_samples

    from tfship.manifest import load_samples

    bad = tmp_path / "1"
    shutil.copytree(keras_v1, bad)
    inputs, outputs = load_samples(bad)
    save_samples(bad, inputs, {k: v + 0.5 for k, v in outputs.items()})
    mismatch = _cli("smoke", "--url", server.grpc_url, "--model", "keras", "--manifest", str(bad))
    assert mismatch.returncode == 1
    assert "FAIL keras v1" in mismatch.stdout and "MISMATCH" in mismatch.stdout


def test_status_cli(server: Any) -> None:
    shown = _cli("status", "--url", server.rest_url, "--model", "multi", "--model", "keras")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == [
        "multi  version 2  AVAILABLE", "multi  version 1  AVAILABLE", "keras  version 1  AVAILABLE"]
    missing = _cli("status", "--url", server.grpc_url, "--model", "nope")
    assert missing.returncode == 1 and "nope: not served" in missing.stdout
    down = _cli("status", "--url", f"grpc://127.0.0.1:{free_port()}", "--model", "x")
    assert down.returncode == 3 and "error:" in down.stderr
