"""Deployment image end to end on a REAL Docker engine.

Builds the stand-in for tensorflow/serving (cached, scripts/build-standin-base), builds
Dockerfile.serving on it through `tfship build`, runs it with models baked in and with the models
dir bind-mounted read-only, and checks: gRPC and REST predictions equal the in-memory Keras model,
a version dropped into the mounted dir gets served, the server is not root, the container stops
cleanly, and the documented errors (missing image, port in use, container exited).

The `engine` and `standin_base` fixtures live in conftest.py (one stand-in build per session).
Without an engine these tests skip; with TFSHIP_REQUIRE_DOCKER=1 (set by .ci/run once the engine
is up) they fail instead.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from tfship.cli import main

from tfship.errors import DockerError

# The first test also pays for the stand-in build (~2-4 min fresh on 2 busy cores).
pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(1200)]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _keras_model(seed: int):  # type: ignore[no-untyped-def]
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(4,), name="features")
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    outputs = keras.layers.Dense(2, name="score")(hidden)
    return keras.Model(inputs, outputs)


SAMPLES = np.random.default_rng(7).normal(size=(16, 4)).astype(np.float32)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, tf_serving_testdata: Path):  # type: ignore[no-untyped-def]
    """models/regressor/1 exported from an in-memory Keras model + TF Serving's half_plus_three."""
    from tfship.export import export_model

    root = tmp_path_factory.mktemp("docker") / "models"
    model = _keras_model(seed=1)
    export_model(model, root, "regressor", 1, samples=SAMPLES[:4])
    shutil.copytree(tf_serving_testdata / "saved_model_half_plus_three", root / "half_plus_three")
    os.chmod(root, 0o755)
    return root, model


@pytest.fixture(scope="module")
def image(  # type: ignore[no-untyped-def]
    engine, standin_base: str, models, tmp_path_factory: pytest.TempPathFactory, tf_serving_testdata: Path
) -> Iterator[str]:
    """`tfship build` of Dockerfile.serving on the stand-in base, with batching and monitoring."""
    root, _ = models
    tag = f"tfship-e2e/models:{hashlib.sha256(str(root).encode()).hexdigest()[:12]}"
    context = tmp_path_factory.mktemp("ctx") / "context"
    started = time.monotonic()
    result = CliRunner().invoke(
        main,
        ["build", str(root), "--tag", tag, "--base-image", standin_base, "--monitoring",
         "--batching", str(tf_serving_testdata / "batching_config.txt"), "--context-dir", str(context)],
    )
    assert result.exit_code == 0, result.output
    print(f"tfship build took {time.monotonic() - started:.1f} s")
    assert "Step" in result.output  # build progress was streamed
    yield tag
    engine.images.remove(tag, force=True)


def test_image_labels_user_and_entrypoint(engine, image: str, standin_base: str, models) -> None:  # type: ignore[no-untyped-def]
    root, _ = models
    img = engine.images.get(image)
    labels = img.labels
    assert labels["io.tfship.models"] == "half_plus_three,regressor"
    assert labels["io.tfship.model-versions"] == "half_plus_three:123;regressor:1"
    manifest = root / "regressor" / "1" / "assets.extra" / "tfship_manifest.json"
    assert labels["io.tfship.manifest-sha256"] == (
        f"regressor/1={hashlib.sha256(manifest.read_bytes()).hexdigest()}"
    )
    assert labels["org.opencontainers.image.base.name"] == standin_base
    config = img.attrs["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["/usr/bin/tf_serving_entrypoint.sh"]
    assert set(config["ExposedPorts"]) == {"8500/tcp", "8501/tcp"}
    assert config["Cmd"] == [
        "--model_config_file=/etc/tfship/models.config",
        "--enable_batching",
        "--batching_parameters_file=/etc/tfship/batching.config",
        "--monitoring_config_file=/etc/tfship/monitoring.config",
    ]


def test_baked_image_serves_the_in_memory_model(engine, image: str, models) -> None:  # type: ignore[no-untyped-def]
    from tfship.client import connect
    from tfship.client.parity import check_parity
    from tfship.deploy.docker.run import start_container

    _, model = models
    server = start_container(image, grpc_port=_free_port(), rest_port=_free_port(), client=engine)
    try:
        assert server.wait_until_available(timeout=180) == {"half_plus_three": 123, "regressor": 1}
        for url in (server.grpc_url, server.rest_url):
            with connect(url) as client:
                report = check_parity(client, "regressor", model, inputs=SAMPLES)
                assert report.ok, report.text()
                y = client.predict("half_plus_three", np.array([[1.0], [4.0]], np.float32))
                np.testing.assert_allclose(np.asarray(next(iter(y.values())) if isinstance(y, dict) else y),
                                           [[3.5], [5.0]])
        # --monitoring at build time: the REST port serves Prometheus metrics
        import httpx

        metrics = httpx.get(f"{server.rest_url}/monitoring/prometheus/metrics", timeout=10)
        assert metrics.status_code == 200 and "# TYPE" in metrics.text
        # every process in the container runs unprivileged
        top = server.container.top(ps_args="-o pid,uid,args")
        uids = {row[top["Titles"].index("UID")] for row in top["Processes"]}
        assert uids and "0" not in uids, top
        started = time.monotonic()
        code = server.stop(timeout=20)
        assert time.monotonic() - started < 20, "SIGTERM did not stop the server; it was killed"
        assert code != 137
        assert not engine.containers.list(all=True, filters={"id": server.container.id})
    finally:
        server.stop()


def test_bind_mounted_models_pick_up_a_new_version(engine, standin_base: str, models) -> None:  # type: ignore[no-untyped-def]
    """The classic `docker run -v models:/models:ro tensorflow/serving` use, plus a hot new version."""
    from tfship.client import connect
    from tfship.client.parity import check_parity
    from tfship.deploy.docker.run import start_container
    from tfship.export import export_model

    root, model = models
    server = start_container(standin_base, models_dir=root, grpc_port=_free_port(),
                             rest_port=_free_port(), client=engine)
    try:
        server.wait_until_available(timeout=180)
        mount = next(m for m in server.container.attrs["Mounts"] if m["Destination"] == "/models/regressor")
        assert mount["RW"] is False
        denied = server.container.exec_run(["sh", "-c", "touch /models/regressor/x"])
        assert denied.exit_code != 0
        new_model = _keras_model(seed=2)
        export_model(new_model, root, "regressor", 2, samples=SAMPLES[:4])
        with connect(server.grpc_url) as client:
            assert client.wait_until_available("regressor", 2, timeout=60) == 2
            report = check_parity(client, "regressor", new_model, inputs=SAMPLES, version=2)
            assert report.ok, report.text()
        with connect(server.rest_url) as client:
            assert check_parity(client, "regressor", new_model, inputs=SAMPLES).ok
    finally:
        server.stop()
        shutil.rmtree(root / "regressor" / "2", ignore_errors=True)


def test_missing_image_is_reported_not_pulled(engine, models) -> None:  # type: ignore[no-untyped-def]
    from tfship.deploy.docker.run import start_container

    root, _ = models
    missing = "tfship-e2e/never-built:0"
    result = CliRunner().invoke(main, ["build", str(root), "--tag", "tfship-e2e/x:1", "--base-image", missing])
    assert result.exit_code == 2
    assert "is not present" in result.output and "docker pull" in result.output
    with pytest.raises(DockerError, match="is not present"):
        start_container(missing, models_dir=root, client=engine)
    assert not engine.images.list(name="tfship-e2e/never-built")


def test_port_in_use_is_reported(engine, standin_base: str, models) -> None:  # type: ignore[no-untyped-def]
    from tfship.deploy.docker.run import start_container

    root, _ = models
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(DockerError, match=f"Port {port} on 127.0.0.1 is already in use"):
            start_container(standin_base, models_dir=root, grpc_port=port, rest_port=_free_port(), client=engine)


def test_container_that_exits_shows_its_logs(  # type: ignore[no-untyped-def]
    engine, standin_base: str, tmp_path: Path, tf_serving_testdata: Path
) -> None:
    from tfship.deploy.docker.run import start_container, stop_containers

    bad = tmp_path / "models"
    shutil.copytree(tf_serving_testdata / "bad_half_plus_two", bad / "bad_half_plus_two")
    os.chmod(tmp_path, 0o755)
    server = start_container(standin_base, models_dir=bad, grpc_port=_free_port(), rest_port=_free_port(),
                             name=f"tfship-e2e-bad-{os.getpid()}", client=engine,
                             extra_args=("--max_num_load_retries=0",))  # fail now, not after 5 retries
    try:
        with pytest.raises(DockerError, match=r"exited with code \d+ before serving(.|\n)*Last log lines"):
            server.wait_until_available(timeout=120)
        assert "Session Bundle is deprecated" in server.logs()
    finally:
        assert stop_containers(server.name, client=engine) == [server.name]


def test_cli_serve_docker_runs_until_interrupted(engine, standin_base: str, models) -> None:  # type: ignore[no-untyped-def]
    """`tfship serve MODELS --docker --image BASE`: ready line, answers, Ctrl-C removes the container."""
    import signal
    import sys

    from tfship.client import connect

    root, _ = models
    grpc_port, rest_port = _free_port(), _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tfship", "serve", str(root), "--docker", "--image", standin_base,
         "--port", str(grpc_port), "--rest-port", str(rest_port), "--timeout", "180"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # the CLI prints the URLs only once every model is AVAILABLE
            seen.append(line)
            if f"REST http://127.0.0.1:{rest_port}" in line:
                break
        else:
            pytest.fail("tfship serve --docker ended before serving:\n" + "".join(seen))
        with connect(f"http://127.0.0.1:{rest_port}") as client:
            assert client.predict("half_plus_three", np.array([[2.0]], np.float32)) is not None
        containers = engine.containers.list(filters={"label": "io.tfship.serve"})
        assert any(c.labels.get("io.tfship.rest-url") == f"http://127.0.0.1:{rest_port}" for c in containers)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    remaining = engine.containers.list(all=True, filters={"label": "io.tfship.serve"})
    assert not [c for c in remaining if c.labels.get("io.tfship.rest-url") == f"http://127.0.0.1:{rest_port}"]


def test_cli_stop_removes_tfship_containers(engine, standin_base: str, models) -> None:  # type: ignore[no-untyped-def]
    from tfship.deploy.docker.run import start_container

    root, _ = models
    name = f"tfship-e2e-stop-{os.getpid()}"
    start_container(standin_base, models_dir=root, grpc_port=_free_port(), rest_port=_free_port(),
                    name=name, client=engine)
    result = CliRunner().invoke(main, ["stop", name])
    assert result.exit_code == 0, result.output
    assert f"stopped {name}" in result.output
    assert not engine.containers.list(all=True, filters={"name": name})
    again = CliRunner().invoke(main, ["stop", name])
    assert again.exit_code == 0 and "no tfship server containers running" in again.output
