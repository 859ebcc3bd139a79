"""Fixtures for the model-server tests: ``tfship-model-server`` as a real subprocess.

* ``start_model_server(*flags, models=(...), rest=True)`` -> ``ServerProcess`` on free 127.0.0.1
  ports, ready per ``model_server_process.launch``; all servers are SIGTERMed at teardown.
* ``run_model_server(*flags)`` -> CompletedProcess for start-failure tests (bounded).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from model_server_process import ServerProcess, launch, server_command


@pytest.fixture
def start_model_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: start servers for this test; all are SIGTERMed (then killed) at teardown."""
    started: list[ServerProcess] = []

    def start(*flags: str, **kwargs: Any) -> ServerProcess:
        server = launch(tmp_path / f"server{len(started)}", *flags, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.terminate()


@pytest.fixture
def run_model_server(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the server to completion (start-failure tests); bounded by ``timeout``."""

    def run(*flags: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        return subprocess.run(
            [*server_command(), "--host=127.0.0.1", *flags],
            capture_output=True, text=True, timeout=timeout, env=env,
        )

    return run




@pytest.fixture(scope="session")
def shared_models_server(
    tmp_path_factory: pytest.TempPathFactory, tf_serving_testdata: Path
) -> Iterator[ServerProcess]:
    """One server on the TF Serving test models of this run (``default`` = half_plus_two, ``tf2`` = its TF2
    export, ``two`` = saved_model_half_plus_two_2_versions), for tests that throw bad input at it.
    REST bodies are capped at 1 MB (``--rest_api_max_request_bytes``)."""
    td = tf_serving_testdata
    tmp = tmp_path_factory.mktemp("shared-models")
    config = tmp / "models.config"
    config.write_text(f"""
model_config_list {{
  config {{ name: "default" base_path: "{td / 'saved_model_half_plus_two_cpu'}" model_platform: "tensorflow" }}
  config {{ name: "tf2" base_path: "{td / 'saved_model_half_plus_two_tf2_cpu'}" model_platform: "tensorflow" }}
  config {{ name: "two" base_path: "{td / 'saved_model_half_plus_two_2_versions'}" model_platform: "tensorflow" }}
}}
""")
    server = launch(tmp / "server", f"--model_config_file={config}",
                    "--rest_api_max_request_bytes=1000000", models=("default", "tf2", "two"))
    yield server
    server.terminate()


@pytest.fixture(scope="session")
def gated_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TF1 SavedModel whose ``gated`` signature blocks until ``open`` released it.

    ``serving_default``: y = 2x. ``gated``: y = x + (next value from a FIFO queue), i.e. each run
    of ``gated`` waits for one value fed through ``open`` (v = values to enqueue). This gives tests
    a run that is in flight for exactly as long as they want, without sleeps.
    """
    path = tmp_path_factory.mktemp("gated") / "1"
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None], name="x")
        queue = tf.queue.FIFOQueue(1000, [tf.float32], shapes=[[]], name="gate")
        gated = tf.identity(x + queue.dequeue(), name="gated_y")
        v = tf.compat.v1.placeholder(tf.float32, [None], name="v")
        with tf.control_dependencies([queue.enqueue_many([v])]):
            opened = tf.identity(v, name="opened")
        double = tf.identity(2.0 * x, name="double")
        signature = tf.compat.v1.saved_model.predict_signature_def
        with tf.compat.v1.Session(graph=graph) as session:
            builder = tf.compat.v1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(
                session,
                ["serve"],
                signature_def_map={
                    "serving_default": signature({"x": x}, {"y": double}),
                    "gated": signature({"x": x}, {"y": gated}),
                    "open": signature({"v": v}, {"opened": opened}),
                },
            )
            builder.save()
    return path
