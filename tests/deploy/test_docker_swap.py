"""Hot-swap against the Docker image: 8 clients keep sending while versions change.

The container runs the stand-in for tensorflow/serving (conftest `standin_base`) as uid 10001 on a
read-only root, with the models dir bind-mounted READ-ONLY at /models/NAME: swaps publish on the
host (one rename into the mounted dir) and reach the server only through its public APIs, exactly
as against the official image. Each version computes y = 2*sum(x) + bias with its own bias, so a
response's values and its model_spec.version both tell which version answered.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from swap_checks import RAW, assert_clean_traffic, check_latest_swaps_under_load, outputs_of
from tfship.client import connect
from tfship.deploy.history import read_history
from tfship.deploy.launch import free_port
from tfship.deploy.swap import SwapOptions, rollback, swap
from tfship.deploy.traffic import Traffic
from tfship.export import export_model

from tfship.errors import SwapError

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(900)]

X = np.ones((2, 4), np.float32)
SWAPS = 10
CONTAINER_START_TIMEOUT = 180


@pytest.fixture
def models_dir(tmp_path: Path, make_affine_model: Any) -> Path:
    export_model(make_affine_model(1.0), tmp_path, "affine")
    return tmp_path


@contextlib.contextmanager
def _private_umask() -> Iterator[None]:
    """umask 077, as on hardened hosts: export then writes 0700 dirs and 0600 files."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


@contextlib.contextmanager
def _serve(engine: Any, image: str, models_dir: Path, *extra: str) -> Iterator[tuple[str, str]]:
    from tfship.deploy.docker.run import start_container

    with start_container(image, models_dir=models_dir, grpc_port=free_port(), rest_port=free_port(),
                         extra_args=extra, client=engine) as server:
        assert server.wait_until_available(timeout=CONTAINER_START_TIMEOUT) == {"affine": 1}
        mount = next(m for m in server.container.attrs["Mounts"] if m["Destination"] == "/models/affine")
        assert mount["RW"] is False
        yield server.grpc_url, server.rest_url


def test_latest_policy_swaps_in_a_container_drop_no_request(
    engine: Any, standin_base: str, models_dir: Path, make_affine_model: Any
) -> None:
    with _serve(engine, standin_base, models_dir) as (url, rest_url):
        check_latest_swaps_under_load(url, models_dir, make_affine_model, swaps=SWAPS, timeout=90, rest_url=rest_url)


def test_label_swaps_in_a_container_reload_its_config_over_grpc(
    engine: Any, standin_base: str, models_dir: Path, make_affine_model: Any
) -> None:
    # The config lives in the mounted model dir (TF Serving ignores non-numeric entries there), so
    # the host rewrites the very file the container reads; the later --model_config_file wins.
    config = models_dir / "affine" / "models.config"
    config.write_text(
        'model_config_list { config { name: "affine" base_path: "/models/affine" model_platform: "tensorflow" '
        "model_version_policy { specific { versions: 1 } } version_labels { key: 'stable' value: 1 } } }"
    )
    os.chmod(config, 0o644)
    with _serve(engine, standin_base, models_dir, "--model_config_file=/models/affine/models.config",
                "--allow_version_labels_for_unavailable_models") as (url, rest_url):
        options = SwapOptions(url=url, label="stable", config_file=config, reload="grpc", timeout=90)
        # Under a private umask too: the container (uid 10001) must still read every new version
        # and, on a restart, the rewritten config.
        expected = {1: outputs_of(make_affine_model(1.0), X)}
        with Traffic(url, "affine", X, clients=9, label="stable", via=RAW, rest_url=rest_url, expected=expected,
                     max_seconds=400) as traffic, _private_umask():
            traffic.wait_for_requests(50)
            for i in range(1, SWAPS + 1):
                model = make_affine_model(1.0 + i)
                expected[i + 1] = outputs_of(model, X)
                record = swap(models_dir, "affine", model, options=options)
                assert (record.outcome, record.to_version) == ("promoted", i + 1)
                assert record.parity and record.parity["ok"]
        assert_clean_traffic(traffic, set(range(1, SWAPS + 2)))
        with connect(url) as client:
            assert client.metadata("affine", label="stable").version == SWAPS + 1
            # push 3 unloaded every version no label points at
            assert [v.version for v in client.status("affine") if v.available] == [SWAPS + 1]
        assert f"value: {SWAPS + 1}" in config.read_text()
        assert config.stat().st_mode & 0o777 == 0o644

        back = rollback(models_dir, "affine", options=options)
        assert (back.outcome, back.to_version) == ("rolled_back", SWAPS)
        with connect(url) as client:
            assert client.metadata("affine", label="stable").version == SWAPS
            np.testing.assert_allclose(client.predict("affine", X, label="stable"), np.full((2, 1), 8.0 + SWAPS))
        assert f"value: {SWAPS}" in config.read_text()


def test_an_unloadable_version_never_replaces_the_one_the_container_serves(
    engine: Any, standin_base: str, models_dir: Path, make_affine_model: Any
) -> None:
    """The container itself must fail to load it: a valid graph whose variables are truncated
    passes the on-disk signature guard, and the in-process pre-flight is off."""
    staged = Path(export_model(make_affine_model(5.0), models_dir / ".tfship" / "staging", "affine", version=2).path)
    for data in (staged / "variables").glob("variables.data-*"):
        data.write_bytes(data.read_bytes()[:3])
    # No load retries: fail now rather than after 5 retries a minute apart (TF Serving's default).
    with _serve(engine, standin_base, models_dir, "--max_num_load_retries=0") as (url, rest_url):
        options = SwapOptions(url=url, timeout=90, verify_in_process=False)
        with Traffic(url, "affine", X, clients=9, via=RAW, rest_url=rest_url,
                     expected={1: outputs_of(make_affine_model(1.0), X)}, max_seconds=300) as traffic:
            traffic.wait_for_requests(50)
            with pytest.raises(SwapError, match="did not pass on the server") as info:
                swap(models_dir, "affine", version=2, options=options)
            after = len(traffic.samples)
            traffic.wait_for_requests(after + 50)  # the old version keeps answering after the failure
        assert_clean_traffic(traffic, {1})
        with connect(url) as client:
            np.testing.assert_allclose(client.predict("affine", X), np.full((2, 1), 9.0))
            assert client.metadata("affine").version == 1
    record = info.value.record
    assert (record.outcome, record.from_version, record.to_version) == ("failed", 1, 2)
    assert "failed to load" in record.reason  # reported by the container, not by a pre-flight
    assert not (models_dir / "affine" / "2").exists()
    assert Path(record.quarantined).is_dir()
    assert [(r.outcome, r.to_version) for r in read_history(models_dir, "affine")] == [("failed", 2)]


def test_a_version_exported_under_a_private_umask_is_readable_by_the_container(
    engine: Any, standin_base: str, models_dir: Path, make_affine_model: Any
) -> None:
    """The server in the image runs as uid 10001: a swap grants the new version the read access
    the model dir grants, or it would stay LOADING."""
    with _serve(engine, standin_base, models_dir) as (url, _), _private_umask():
        record = swap(models_dir, "affine", make_affine_model(2.0), options=SwapOptions(url=url, timeout=60))
        assert (record.outcome, record.to_version) == ("promoted", 2)
        with connect(url) as client:
            np.testing.assert_allclose(client.predict("affine", X), np.full((2, 1), 10.0))
