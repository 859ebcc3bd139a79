"""V2 front-end fixtures: a model server over a Keras model and a string model, and a venv with
the third-party V2 clients.

tritonclient[grpc] and kserve pin protobuf<7 and tfship's wire code needs protobuf>=7, so they run
in their own venv (cached in $TFSHIP_CACHE, default /var/cache/tfship, built once with pip, as
tests/deploy/k8s/test_k8s_kserve.py does for kserve alone) through v2_clients.py.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

TRITONCLIENT_VERSION = "2.73.0"
KSERVE_VERSION = "0.21.0"
PACKAGES = [f"tritonclient[http,grpc]=={TRITONCLIENT_VERSION}", f"kserve=={KSERVE_VERSION}"]


@pytest.fixture(scope="session")
def v2_clients_python() -> Path:
    """A venv's python with tritonclient and kserve installed (built on first use, then reused)."""
    cache = Path(os.environ.get("TFSHIP_CACHE", "/var/cache/tfship"))
    home = cache / f"venv-v2-clients-tritonclient{TRITONCLIENT_VERSION}-kserve{KSERVE_VERSION}"
    python = home / "bin" / "python"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "venv-v2-clients.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # one import check per package: the two cannot be imported into one process (both register
        # the protocol's messages as package "inference")
        ok = python.exists() and all(
            subprocess.run([str(python), "-c", check], capture_output=True, timeout=120).returncode == 0
            for check in ("import tritonclient.http, tritonclient.grpc", "import kserve"))
        if not ok:
            venv.create(home, with_pip=True, clear=True)
            proc = subprocess.run([str(python), "-m", "pip", "install", "-q", *PACKAGES],
                                  capture_output=True, text=True, timeout=1200)
            if proc.returncode != 0:
                pytest.fail(f"could not install {PACKAGES} into {home}:\n{proc.stderr[-3000:]}")
    return python


def build_keras_model() -> Any:
    import keras

    keras.utils.set_random_seed(3)
    return keras.Sequential([keras.Input((4,), name="features"), keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(3, activation="softmax", name="probs")])


def build_strings_model(path: Path) -> None:
    """``text`` (string [n]) -> ``upper`` (string [n]) and ``length`` (int32 [n], UTF-8 bytes)."""
    import tensorflow as tf

    module = tf.Module()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve(text: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"upper": tf.strings.upper(text), "length": tf.strings.length(text)}

    module.serve = serve
    tf.saved_model.save(module, str(path), signatures={"serving_default": serve})


@pytest.fixture(scope="session")
def keras_model() -> Any:
    return build_keras_model()


@pytest.fixture(scope="session")
def v2_server(tmp_path_factory: pytest.TempPathFactory, keras_model: Any) -> Iterator[Any]:
    """tfship-model-server with ``keras`` (versions 1 and 2, labels stable=1, canary=2) and ``strings``."""
    pytest.importorskip("tensorflow")
    from tfship.deploy.launch import start_model_server
    from tfship.export import export_model

    base = tmp_path_factory.mktemp("v2-models")
    samples = np.random.default_rng(4).normal(size=(8, 4)).astype(np.float32)
    export_model(keras_model, base, "keras", samples=samples, version=1)
    shutil.copytree(base / "keras" / "1", base / "keras" / "2")  # the same model as version 2: labels to address
    build_strings_model(base / "strings" / "1")
    config = base / "models.config"
    config.write_text(f"""model_config_list {{
  config {{
    name: "keras" base_path: "{base / 'keras'}" model_platform: "tensorflow"
    model_version_policy {{ all {{ }} }}
    version_labels {{ key: "stable" value: 1 }}
    version_labels {{ key: "canary" value: 2 }}
  }}
  config {{ name: "strings" base_path: "{base / 'strings'}" model_platform: "tensorflow" }}
}}
""")
    monitoring = base / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }\n')
    with start_model_server(model_config_file=str(config), timeout=180,
                            extra_args=["--allow_version_labels_for_unavailable_models=true",
                                        f"--monitoring_config_file={monitoring}",
                                        f"--rest_api_max_request_bytes={4 << 20}"],
                            wait_for=[("keras", 1), ("keras", 2), ("strings", 1)]) as running:
        yield running
