"""Hot-swap on a live tfship-model-server: 8 clients keep sending while versions change.

Each version of the model computes y = 2*sum(x) + bias with its own bias, so a response's values
and its model_spec.version both tell which version answered.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from swap_checks import RAW, assert_clean_traffic, check_latest_swaps_under_load, outputs_of
from tfship.cli import main as cli
from tfship.client import connect
from tfship.deploy.history import read_history
from tfship.deploy.launch import start_model_server
from tfship.deploy.swap import SwapOptions, rollback, swap
from tfship.deploy.traffic import Traffic
from tfship.export import export_model

from tfship.errors import SwapError

pytestmark = pytest.mark.slow

X = np.ones((2, 4), np.float32)
SWAPS = 10


@pytest.fixture
def models_dir(tmp_path: Path, make_affine_model: Any) -> Path:
    export_model(make_affine_model(1.0), tmp_path, "affine")
    return tmp_path


def test_ten_latest_policy_swaps_under_load_drop_no_request(models_dir: Path, make_affine_model: Any) -> None:
    with start_model_server(models_dir / "affine", "affine") as server:
        check_latest_swaps_under_load(server.grpc_url, models_dir, make_affine_model, swaps=SWAPS, timeout=60,
                                      rest_url=server.rest_url)


def test_label_swaps_move_the_label_only_after_the_version_is_loaded_and_verified(
    models_dir: Path, make_affine_model: Any, tmp_path: Path
) -> None:
    config = tmp_path / "models.config"
    config.write_text(
        'model_config_list { config { name: "affine" base_path: "%s" model_platform: "tensorflow" '
        "model_version_policy { specific { versions: 1 } } version_labels { key: 'stable' value: 1 } } }"
        % (models_dir / "affine")
    )
    with start_model_server(model_config_file=str(config), wait_for=[("affine", 1)],
                            extra_args=["--allow_version_labels_for_unavailable_models"]) as server:
        options = SwapOptions(url=server.grpc_url, label="stable", config_file=config, timeout=60)
        expected = {1: outputs_of(make_affine_model(1.0), X)}
        with Traffic(server.grpc_url, "affine", X, clients=9, label="stable", via=RAW, rest_url=server.rest_url,
                     expected=expected, max_seconds=400) as traffic:
            traffic.wait_for_requests(50)
            for i in range(1, SWAPS + 1):
                model = make_affine_model(1.0 + i)
                expected[i + 1] = outputs_of(model, X)
                swap(models_dir, "affine", model, options=options)
        assert_clean_traffic(traffic, set(range(1, SWAPS + 2)))
        with connect(server.grpc_url) as client:
            assert client.metadata("affine", label="stable").version == SWAPS + 1
            # push 3 unloaded every version no label points at
            assert [v.version for v in client.status("affine") if v.available] == [SWAPS + 1]
        # The config file on disk is what the server serves, so a restart keeps the swap.
        assert f"value: {SWAPS + 1}" in config.read_text()
        shown = CliRunner().invoke(cli, ["status", "--url", server.grpc_url, "--config", str(config)])
        assert shown.exit_code == 0, shown.output
        assert f"affine  label stable -> {SWAPS + 1}\n" in shown.output
        assert f"affine  version {SWAPS + 1}  AVAILABLE" in shown.output

        back = rollback(models_dir, "affine", options=options)
        assert (back.outcome, back.to_version) == ("rolled_back", SWAPS)
        with connect(server.grpc_url) as client:
            assert client.metadata("affine", label="stable").version == SWAPS


def _stage_corrupt_version(models_dir: Path, make_affine_model: Any, corrupt: str, version: int = 2) -> int:
    staging = models_dir / ".tfship" / "staging"
    result = export_model(make_affine_model(5.0), staging, "affine", version=version)
    version_dir = Path(result.path)
    if corrupt == "load":
        (version_dir / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    else:  # the reference outputs no longer match what the model computes
        samples = version_dir / "assets.extra" / "tfship_samples.npz"
        with np.load(samples) as data:
            arrays = {k: (data[k] * 3 + 1 if k.startswith("outputs/") else data[k]) for k in data.files}
        np.savez(samples, **arrays)
    return int(result.version)


# Wrong outputs are only caught before publishing: under latest-N a published version is the
# default as soon as it loads, which is exactly why the in-process pre-flight exists.
@pytest.mark.parametrize(
    ("corrupt", "verify_in_process"),
    [("load", True), ("load", False), ("parity", True)],
    ids=["unloadable-preflight", "unloadable-server-side", "wrong-outputs-preflight"],
)
def test_a_bad_version_never_replaces_the_serving_one(
    models_dir: Path, make_affine_model: Any, corrupt: str, verify_in_process: bool
) -> None:
    version = _stage_corrupt_version(models_dir, make_affine_model, corrupt)
    with start_model_server(models_dir / "affine", "affine") as server:
        options = SwapOptions(url=server.grpc_url, timeout=30, verify_in_process=verify_in_process)
        expected = {1: outputs_of(make_affine_model(1.0), X)}
        with Traffic(server.grpc_url, "affine", X, clients=9, via=RAW, rest_url=server.rest_url,
                     expected=expected, max_seconds=200) as traffic:
            traffic.wait_for_requests(50)
            with pytest.raises(SwapError) as info:
                swap(models_dir, "affine", version=version, options=options)
        assert_clean_traffic(traffic, {1})
        with connect(server.grpc_url) as client:
            np.testing.assert_allclose(client.predict("affine", X), np.full((2, 1), 9.0))
    record = info.value.record
    assert record.outcome == "failed"
    assert not (models_dir / "affine" / str(version)).exists()
    assert Path(record.quarantined).is_dir()
    assert [r.outcome for r in read_history(models_dir, "affine")] == ["failed"]


def test_incompatible_signature_is_refused_with_the_difference(models_dir: Path, make_affine_model: Any) -> None:
    with start_model_server(models_dir / "affine", "affine") as server:
        with pytest.raises(SwapError, match=r"input 'x' shape \[-1, 4\] -> \[-1, 6\]"):
            swap(models_dir, "affine", make_affine_model(2.0, features=6),
                 options=SwapOptions(url=server.grpc_url, timeout=30))
        with connect(server.grpc_url) as client:
            assert client.metadata("affine").version == 1
    assert [r.outcome for r in read_history(models_dir, "affine")] == ["refused"]


def test_cli_swap_rollback_and_failure_exit_codes(models_dir: Path, make_affine_model: Any, tmp_path: Path) -> None:
    v2 = tmp_path / "v2.keras"
    make_affine_model(2.0).save(v2)
    runner = CliRunner()
    with start_model_server(models_dir / "affine", "affine") as server:
        ok = runner.invoke(cli, ["swap", str(models_dir), "affine", str(v2), "--url", server.grpc_url])
        assert ok.exit_code == 0, ok.output
        assert "promoted: affine 1 -> 2" in ok.output

        back = runner.invoke(cli, ["rollback", str(models_dir), "affine", "--url", server.grpc_url])
        assert back.exit_code == 0, back.output
        with connect(server.grpc_url) as client:
            assert client.metadata("affine").version == 1

        version = _stage_corrupt_version(models_dir, make_affine_model, "load", version=3)  # 2 was rolled back
        bad = runner.invoke(cli, ["swap", str(models_dir), "affine", "--version", str(version),
                                  "--url", server.grpc_url])
        assert bad.exit_code == 1, bad.output
        assert "swap failed" in bad.output
    lines = [json.loads(line) for line in (models_dir / ".tfship" / "swap-history.jsonl").read_text().splitlines()]
    assert [(r["action"], r["outcome"]) for r in lines] == [("swap", "promoted"), ("rollback", "rolled_back"),
                                                            ("swap", "failed")]
