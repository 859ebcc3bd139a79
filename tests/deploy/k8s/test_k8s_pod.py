"""The pod `tfship k8s render` describes, run on the real Docker engine as Kubernetes would run it.

For baked (the `tfship build` image) and pvc (the stand-in base image + the models dir as a
read-only bind mount) storage: the rendered Deployment's container runs as specified (see
k8s_pod.py), the manifest's own probes are executed like the kubelet does, and the test asserts:

* not ready while the models load: the probe fails at moments between the server's first
  "Loading servable version" and its last "Successfully loaded servable version" log line, and
  first succeeds only after every model's load;
* once ready every model is AVAILABLE (GetModelStatus) and serves the in-memory Keras model's
  predictions over gRPC and REST;
* on termination (preStop, then SIGTERM) requests already in flight complete correctly, the
  probe turns false, and the server exits 0 within terminationGracePeriodSeconds.

The readiness sampling runs the probe action every 0.25 s instead of every periodSeconds: the
action is the manifest's, a denser schedule only makes "never ready while loading" stricter.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from k8s_pod import POD_LABEL, Pod
from tfship.cli import main
from tfship.deploy.k8s import ProbeTiming, RenderOptions, parse_storage, render

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(1500)]

FEATURES = 64
SAMPLES = np.random.default_rng(3).normal(size=(8, FEATURES)).astype(np.float32)
#: small models that lengthen the loading window (each is a separate servable to load and warm up)
SMALL_MODELS = ("alpha", "beta", "gamma")
PRE_STOP_SECONDS = 1


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _dense_model(seed: int, hidden: tuple[int, ...]):  # type: ignore[no-untyped-def]
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(FEATURES,), name="x")
    x = inputs
    for width in hidden:
        x = keras.layers.Dense(width, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(1, name="y")(x))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """models/{slow,alpha,beta,gamma}/1: `slow` is heavy enough for multi-second requests."""
    from tfship.export import export_model

    root = tmp_path_factory.mktemp("k8s") / "models"
    keras_models = {"slow": _dense_model(0, (1024, 1024, 1024, 1024))}
    keras_models |= {name: _dense_model(i + 1, (32,)) for i, name in enumerate(SMALL_MODELS)}
    for name, model in keras_models.items():
        export_model(model, root, name, 1, samples=SAMPLES[:4])
    for dirpath, _dirs, files in os.walk(root):  # the pod's uid reads the claim
        os.chmod(dirpath, 0o755)
        for f in files:
            os.chmod(os.path.join(dirpath, f), 0o644)
    return root, keras_models


@pytest.fixture(scope="module")
def baked_image(engine, standin_base: str, models) -> Iterator[str]:  # type: ignore[no-untyped-def]
    root, _ = models
    tag = f"tfship-e2e/k8s-models:{hashlib.sha256(str(root).encode()).hexdigest()[:12]}"
    result = CliRunner().invoke(main, ["build", str(root), "--tag", tag, "--base-image", standin_base])
    assert result.exit_code == 0, result.output
    yield tag
    engine.images.remove(tag, force=True)


@pytest.fixture
def run_pod(engine) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    pods: list[Pod] = []

    def run(rendered: Any, claims: dict[str, Path] | None = None) -> Pod:
        config_maps = {r["metadata"]["name"]: r["data"] for r in rendered.resources if r["kind"] == "ConfigMap"}
        pod = Pod(engine, rendered.by_kind("Deployment"), config_maps, claims or {})
        pods.append(pod)
        pod.start()
        return pod

    yield run
    for pod in pods:
        pod.remove()
    assert not engine.containers.list(all=True, filters={"label": POD_LABEL, "status": "running"})


def _observe_startup(pod: Pod, limit: float) -> list[tuple[float, bool]]:
    """Run the startup probe action until it succeeds; (time, result) of every execution."""
    observed: list[tuple[float, bool]] = []
    deadline = time.time() + limit
    while time.time() < deadline:
        ok = pod.probe("startupProbe")
        observed.append((time.time(), ok))
        if ok:
            return observed
        pod.container.reload()
        assert pod.container.status == "running", "\n".join(t for _, t in pod.logs()[-30:])
        time.sleep(0.25)  # the probe schedule (a kubelet's period), not a wait for a condition
    raise AssertionError(f"not ready within the startup probe's {limit:.0f} s: "
                         + "\n".join(t for _, t in pod.logs()[-30:]))


def _check_lifecycle(pod: Pod, models: tuple[Path, dict[str, Any]],
                     scrape: dict[str, Any] | None = None) -> dict[str, float]:
    from tfship.client import connect
    from tfship.client.parity import check_parity

    root, keras_models = models
    container = pod.spec
    startup = container["startupProbe"]
    started = time.time()
    observed = _observe_startup(pod, startup["periodSeconds"] * startup["failureThreshold"])
    ready_at = observed[-1][0]

    # Not ready while loading; ready only after every model loaded.
    log = pod.logs()
    loading = [t for t, line in log if "Loading servable version" in line]
    loaded = {name: t for t, line in log for name in keras_models
              if "Successfully loaded servable version" in line and f"name: {name} " in line}
    assert loading and set(loaded) == set(keras_models), "\n".join(line for _, line in log)
    window = (min(loading), max(loaded.values()))
    during = [ok for t, ok in observed if window[0] < t < window[1]]
    assert during and not any(during), (window, observed)
    assert ready_at >= window[1]

    grpc_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "grpc")
    http_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "http")
    grpc_url, rest_url = f"grpc://127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}"
    with connect(grpc_url) as client:
        for name in keras_models:
            assert [(s.version, s.state) for s in client.status(name)] == [(1, "AVAILABLE")]
    assert pod.probe("readinessProbe") and pod.probe("livenessProbe")
    for url in (grpc_url, rest_url):
        with connect(url) as client:
            for name, model in keras_models.items():
                report = check_parity(client, name, model, inputs=SAMPLES)
                assert report.ok, report.text()

    if scrape is not None:  # the ServiceMonitor's port and path serve TF Serving's metrics
        import httpx

        endpoint = scrape["spec"]["endpoints"][0]
        port = next(p["containerPort"] for p in container["ports"] if p["name"] == endpoint["port"])
        metrics = httpx.get(f"http://127.0.0.1:{port}{endpoint['path']}", timeout=10)
        assert metrics.status_code == 200 and ":tensorflow:serving:request_count" in metrics.text

    # Drain: slow requests in flight across preStop and SIGTERM all complete, correctly.
    # Size the requests so one takes ~3 s here: longer than preStop + the exec round trip, so
    # all of them are still running when SIGTERM arrives (asserted below).
    rng = np.random.default_rng(5)
    with connect(grpc_url) as client:
        t = time.monotonic()
        client.predict("slow", rng.normal(size=(2000, FEATURES)).astype(np.float32))
        per_row = (time.monotonic() - t) / 2000
    rows = rng.normal(size=(int(np.clip(3.0 / per_row, 2000, 32000)), FEATURES)).astype(np.float32)
    single = per_row * len(rows)
    expected = keras_models["slow"].predict(rows, verbose=0)
    in_flight = 3
    done_at: dict[int, float] = {}

    def call(i: int) -> np.ndarray:
        with connect(grpc_url) as client:
            out = client.predict("slow", rows)
        done_at[i] = time.time()
        return np.asarray(next(iter(out.values())) if isinstance(out, dict) else out)

    grace = pod.pod_spec["terminationGracePeriodSeconds"]
    with concurrent.futures.ThreadPoolExecutor(in_flight) as pool:
        futures = [pool.submit(call, i) for i in range(in_flight)]
        terminating = time.time()
        pod.pre_stop()
        pod.signal_term()
        sigterm_at = time.time()
        # the server stops accepting: the probe turns false while the requests still run
        not_ready_at = None
        while time.time() < sigterm_at + grace:
            if not pod.probe("readinessProbe"):
                not_ready_at = time.time()
                break
            time.sleep(0.1)
        results = [f.result(timeout=grace) for f in futures]
    code = pod.wait_exit(timeout=max(1.0, terminating + grace - time.time()))
    exited_at = time.time()
    assert code == 0, "\n".join(t for _, t in pod.logs()[-30:])
    assert exited_at - terminating < grace
    assert not_ready_at is not None
    assert min(done_at.values()) > sigterm_at, (
        f"a request finished before SIGTERM ({len(rows)} rows, ~{single:.2f} s each): not in flight")
    for out in results:
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    return {"start_to_ready_s": ready_at - started, "loading_window_s": window[1] - window[0],
            "probes_failed_while_loading": len(during), "single_request_s": single,
            "sigterm_to_exit_s": exited_at - sigterm_at, "grace_s": grace}


def _options(image: str, storage: str, **kwargs: Any) -> RenderOptions:
    return RenderOptions(image=image, storage=parse_storage(storage), grpc_port=_free_port(),
                         http_port=_free_port(), timing=ProbeTiming(pre_stop_seconds=PRE_STOP_SECONDS), **kwargs)


def test_baked_pod_runs_as_rendered(models, baked_image: str, run_pod, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, _ = models
    # batching and monitoring configs come from the ConfigMap, not the image
    batching = tmp_path / "batching.txt"
    batching.write_text("max_batch_size { value: 32768 }\nbatch_timeout_micros { value: 2000 }\n")
    rendered = render(root, _options(baked_image, "baked", batching_file=batching, monitoring=True))
    assert "num_batch_threads {\n  value: 2\n}" in rendered.by_kind("ConfigMap")["data"]["batching.config"]
    pod = run_pod(rendered)
    figures = _check_lifecycle(pod, models, scrape=rendered.by_kind("ServiceMonitor"))
    print("baked:", {k: round(v, 2) for k, v in figures.items()})


def test_pvc_pod_runs_as_rendered(models, standin_base: str, run_pod) -> None:  # type: ignore[no-untyped-def]
    root, _ = models
    rendered = render(root, _options(standin_base, "pvc:models"))
    pod = run_pod(rendered, claims={"models": root})
    # the claim is mounted read-only, and the root filesystem is read-only too
    for path in ("/models/slow/x", "/etc/x", "/usr/x"):
        result = pod.container.exec_run(["sh", "-c", f"touch {path}"], user="10001")
        assert result.exit_code != 0, path
    figures = _check_lifecycle(pod, models)
    print("pvc:", {k: round(v, 2) for k, v in figures.items()})
