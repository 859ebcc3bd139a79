"""deploy.launch: one readiness wait (GetModelStatus through the client) for every launcher."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tfship.deploy.launch import start_model_server, wait_until_serving
from tfship.export import export_model

from tfship.errors import UnavailableError


def test_wait_until_serving_returns_the_available_version_over_both_transports(
        tmp_path: Path, make_affine_model: Any) -> None:
    export_model(make_affine_model(1.0), tmp_path, "affine")
    with start_model_server(tmp_path / "affine", "affine", timeout=180) as server:
        assert wait_until_serving(server.grpc_url, [("affine", None)], rest_url=server.rest_url,
                                  timeout=30) == {"affine": 1}
        assert wait_until_serving(server.grpc_url, [("affine", 1)], timeout=30) == {"affine": 1}


def test_a_model_without_versions_times_out_naming_it_with_the_log_tail(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()  # TF Serving waits forever for a first version; so do we, boundedly
    with pytest.raises(UnavailableError, match=r"(?s)\['empty'\] did not become AVAILABLE on grpc://.* "
                                               r"within 5 s.*Log tail"):
        start_model_server(tmp_path / "empty", "empty", timeout=5)


def test_a_server_that_exits_is_reported_with_its_status_and_log(tmp_path: Path) -> None:
    with pytest.raises(UnavailableError, match=r"(?s)exited with status \d+ before serving.*Log tail.*"
                                               r"Failed to start server"):
        start_model_server(model_config_file=str(tmp_path / "missing.config"), wait_for=[("m", None)],
                           timeout=120)
