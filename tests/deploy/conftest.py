"""Fixtures for end-to-end tests: tiny Keras models whose versions answer differently, and the
Docker engine + stand-in base image shared by every docker test module (built once per session).

Without an engine the docker fixtures skip; with TFSHIP_REQUIRE_DOCKER=1 (set by .ci/run once the
engine is up) they fail instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tfship.errors import DockerError

REPO_ROOT = Path(__file__).resolve().parents[2]
STANDIN_BUILD_TIMEOUT = 900


@pytest.fixture(scope="session")
def make_affine_model() -> Callable[..., Any]:
    """``make_affine_model(bias)``: y = 2x + bias on 4 features, so each version is recognisable."""
    import keras

    def make(bias: float, *, features: int = 4, outputs: int = 1) -> Any:
        inputs = keras.Input(shape=(features,), name="x")
        layer = keras.layers.Dense(outputs, name="y")
        model = keras.Model(inputs, layer(inputs))
        layer.set_weights([np.full((features, outputs), 2.0, np.float32), np.full((outputs,), bias, np.float32)])
        return model

    return make


def _unavailable(reason: str) -> None:
    if os.environ.get("TFSHIP_REQUIRE_DOCKER") == "1":
        pytest.fail(f"TFSHIP_REQUIRE_DOCKER=1 but {reason}")
    pytest.skip(f"{reason} (start one with `sudo scripts/docker-engine start` and set DOCKER_HOST)")


@pytest.fixture(scope="session")
def engine() -> Iterator[Any]:
    try:
        import docker  # noqa: F401
        from tfship.deploy.docker.engine import connect

        client = connect(timeout=900)
    except ImportError:
        _unavailable("the docker SDK is not installed")
    except DockerError as exc:
        _unavailable(f"no Docker engine: {exc}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def standin_base(engine: Any) -> str:
    """tfship/serving-standin:<hash>: built once per machine and input hash, then reused."""
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        from tfship.deploy.docker.engine import image_exists

        tag = subprocess.run(
            [str(REPO_ROOT / "scripts" / "build-standin-base"), "--print-tag"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        if not image_exists(engine, tag):
            _unavailable("building the stand-in base image needs root and debootstrap")
        return tag
    proc = subprocess.run(
        [str(REPO_ROOT / "scripts" / "build-standin-base")],
        capture_output=True, text=True, timeout=STANDIN_BUILD_TIMEOUT,
    )
    if proc.returncode != 0:
        pytest.fail(f"scripts/build-standin-base failed:\n{proc.stderr[-4000:]}")
    return proc.stdout.strip().splitlines()[-1]
