"""Client test fixtures: one tfship-model-server per session over tiny purpose-built models.

Tests that need the server skip cleanly when TensorFlow is absent (the TF-free CI venv runs
the rest of tests/client there).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from client_test_models import HAS_TF


@pytest.fixture(scope="session")
def model_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not HAS_TF:
        pytest.skip("needs TensorFlow to build the test SavedModels")
    from client_test_models import build_dtypes_model, build_keras_export, build_multi_model

    base = tmp_path_factory.mktemp("client-models")
    build_dtypes_model(base / "dtypes" / "1")
    build_multi_model(base / "multi" / "1", 1)
    build_multi_model(base / "multi" / "2", 2)
    build_keras_export(base)
    return base


def model_config(base: Path, half: Path | None = None) -> str:
    # half: TF Serving's half_plus_two (classify/regress signatures), when the caller has it
    extra = f'  config {{ name: "half" base_path: "{half}" model_platform: "tensorflow" }}\n' if half else ""
    return f"""model_config_list {{
{extra}  config {{ name: "dtypes" base_path: "{base / 'dtypes'}" model_platform: "tensorflow" }}
  config {{ name: "keras" base_path: "{base / 'keras'}" model_platform: "tensorflow" }}
  config {{
    name: "multi" base_path: "{base / 'multi'}" model_platform: "tensorflow"
    model_version_policy {{ all {{ }} }}
    version_labels {{ key: "stable" value: 1 }}
    version_labels {{ key: "canary" value: 2 }}
  }}
}}
"""


@pytest.fixture(scope="session")
def server(model_base: Path, tf_serving_testdata: Path) -> Iterator[Any]:
    from tfship.deploy.launch import start_model_server

    config = model_base / "models.config"
    config.write_text(model_config(model_base, tf_serving_testdata / "saved_model_half_plus_two_cpu"))
    # TF Serving refuses labels in the startup config unless this flag is set (TF Serving compat spec §2.4).
    wait_for = [("dtypes", 1), ("multi", 1), ("multi", 2), ("keras", 1), ("half", 123)]
    with start_model_server(model_config_file=str(config), timeout=180,
                            extra_args=["--allow_version_labels_for_unavailable_models=true"],
                            wait_for=wait_for) as running:
        yield running


@pytest.fixture(scope="session")
def grpc_client(server: Any) -> Iterator[Any]:
    from tfship.client import connect

    with connect(server.grpc_url) as client:
        yield client


@pytest.fixture(scope="session")
def rest_client(server: Any) -> Iterator[Any]:
    from tfship.client import connect

    with connect(server.rest_url) as client:
        yield client


@pytest.fixture(params=["grpc", "rest"])
def client(request: pytest.FixtureRequest) -> Any:
    """Each test using it runs once per transport."""
    return request.getfixturevalue(f"{request.param}_client")
