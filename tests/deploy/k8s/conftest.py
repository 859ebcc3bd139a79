"""Fixtures for the Kubernetes render tests: models dirs laid out as `tfship export` writes them,
from the real TF Serving test models in shared/testdata."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


def _models_dir(testdata: Path, root: Path, **models: str) -> Path:
    for name, source in models.items():
        shutil.copytree(testdata / source, root / name)
    return root


@pytest.fixture
def one_model(tmp_path: Path, tf_serving_testdata: Path) -> Path:
    """models/half_plus_two/{123,124}/"""
    return _models_dir(tf_serving_testdata, tmp_path / "models",
                       half_plus_two="saved_model_half_plus_two_2_versions")


@pytest.fixture
def two_models(tmp_path: Path, tf_serving_testdata: Path) -> Path:
    """models/half_plus_two/{123,124}/ and models/half_plus_three/123/"""
    return _models_dir(tf_serving_testdata, tmp_path / "models2",
                       half_plus_two="saved_model_half_plus_two_2_versions",
                       half_plus_three="saved_model_half_plus_three")


@pytest.fixture
def batching_file(tf_serving_testdata: Path) -> Path:
    return tf_serving_testdata / "batching_config.txt"
