"""Helpers to run ``tfship-model-server`` as a subprocess in tests (used by conftest.py).

:func:`launch` starts the server with TF Serving flags on free 127.0.0.1 ports and waits (bounded)
until it is ready like upstream's ``WaitForServerReady`` (a Predict for
``intentionally_missing_model`` fails mentioning ``Servable``), then every model in ``models`` has a
version AVAILABLE and REST answers (``tfship.deploy.launch.wait_until_serving``, the readiness wait
of every tfship launcher; without models: the REST port accepts connections).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfship.deploy.launch import free_port, server_command, stop_process, wait_until_serving

__all__ = [
    "ServerProcess", "free_port", "launch", "launch_unready", "server_command", "substitute_config", "wait_until",
]

STARTUP_TIMEOUT = 120.0


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until truthy (returned) or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    grpc_port: int
    rest_port: int | None
    log_dir: Path
    channel: Any = None
    _stubs: dict[str, Any] = field(default_factory=dict)

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def output(self) -> str:
        out = (self.log_dir / "stdout").read_text(errors="replace")
        err = (self.log_dir / "stderr").read_text(errors="replace")
        return f"--- stdout\n{out[-4000:]}\n--- stderr\n{err[-8000:]}"

    @property
    def prediction(self) -> Any:
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        if "p" not in self._stubs:
            self._stubs["p"] = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        return self._stubs["p"]

    @property
    def model_service(self) -> Any:
        from tensorflow_serving.apis import model_service_pb2_grpc

        if "m" not in self._stubs:
            self._stubs["m"] = model_service_pb2_grpc.ModelServiceStub(self.channel)
        return self._stubs["m"]

    def status(self, name: str, version: int | None = None) -> Any:
        from tensorflow_serving.apis import get_model_status_pb2

        req = get_model_status_pb2.GetModelStatusRequest()
        req.model_spec.name = name
        if version is not None:
            req.model_spec.version.value = version
        return self.model_service.GetModelStatus(req, timeout=10)

    def available_versions(self, name: str) -> set[int]:
        import grpc

        try:
            resp = self.status(name)
        except grpc.RpcError:
            return set()
        return {s.version for s in resp.model_version_status if s.state == 30}

    def terminate(self, timeout: float = 30.0) -> int:
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        return int(stop_process(self.proc, timeout))


def _check_alive(server: ServerProcess) -> None:
    if server.proc.poll() is not None:
        raise AssertionError(f"model server exited with {server.proc.returncode}\n{server.output()}")


def _rest_port_open(server: ServerProcess) -> bool:
    _check_alive(server)
    try:
        with socket.create_connection(("127.0.0.1", server.rest_port), timeout=1):
            return True
    except OSError:
        return False


def _grpc_ready(server: ServerProcess) -> bool:
    import grpc
    from tensorflow_serving.apis import predict_pb2

    _check_alive(server)
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "intentionally_missing_model"
    try:
        server.prediction.Predict(req, timeout=2)
    except grpc.RpcError as exc:
        return "Servable" in (exc.details() or "")
    return False


def launch_unready(
    log_dir: Path, *flags: str, rest: bool = False, env: dict[str, str] | None = None
) -> ServerProcess:
    """Start the server without waiting for it (for tests of startup itself); :func:`launch` waits."""
    import grpc

    log_dir.mkdir(parents=True, exist_ok=True)
    grpc_port = free_port()
    rest_port = free_port() if rest else None
    args = [*server_command(), f"--port={grpc_port}", "--host=127.0.0.1"]
    if rest_port:
        args.append(f"--rest_api_port={rest_port}")
    args += list(flags)
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    with open(log_dir / "stdout", "wb") as out, open(log_dir / "stderr", "wb") as err:
        proc = subprocess.Popen(args, stdout=out, stderr=err, env=full_env)
    server = ServerProcess(proc, grpc_port, rest_port, log_dir)
    server.channel = grpc.insecure_channel(server.grpc_address)
    return server


def launch(
    log_dir: Path, *flags: str, models: tuple[str, ...] = (), rest: bool = True,
    timeout: float = STARTUP_TIMEOUT, env: dict[str, str] | None = None,
) -> ServerProcess:
    server = launch_unready(log_dir, *flags, rest=rest, env=env)
    rest_port = server.rest_port
    try:
        wait_until(lambda: _grpc_ready(server), timeout, "gRPC readiness")
        if models:  # the one readiness wait tfship's launchers use (GetModelStatus, then REST)
            wait_until_serving(f"grpc://{server.grpc_address}", [(name, None) for name in models],
                               rest_url=server.rest_url if rest_port else None, timeout=timeout,
                               check_alive=lambda: _check_alive(server), describe=lambda: "\n" + server.output())
        elif rest_port:
            wait_until(lambda: _rest_port_open(server), timeout, "REST port")
    except BaseException:
        server.terminate()
        raise
    return server


def substitute_config(text: str, testdata: Path) -> str:
    """good_model_config.txt's placeholders -> absolute test model paths."""
    return (text.replace("${TEST_HALF_PLUS_TWO_DIR}", str(testdata / "saved_model_half_plus_two_cpu"))
                .replace("${TEST_HALF_PLUS_THREE_DIR}", str(testdata / "saved_model_half_plus_three")))


def copy_version(src_version_dir: Path, dest_base: Path, version: int) -> Path:
    """Publish a copy of ``src_version_dir`` as ``dest_base/<version>`` atomically (rename)."""
    dest_base.mkdir(parents=True, exist_ok=True)
    tmp = dest_base / f".tmp-{version}"
    shutil.copytree(src_version_dir, tmp)
    final = dest_base / str(version)
    os.rename(tmp, final)
    return final
