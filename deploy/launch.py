"""Start ``tfship-model-server`` as a subprocess and wait until it really serves.

* :func:`start_model_server` - free loopback ports, for the pytest plugin, ``tfship demo`` and tests;
* :func:`start_local_server` - ``tfship serve``: every model under MODELS_DIR on the given ports;
* :func:`wait_until_serving` - the one readiness wait, also used for server containers
  (:meth:`tfship.deploy.docker.run.ServingContainer.wait_until_available`).

Readiness is a bounded wait on GetModelStatus through :mod:`tfship.client` (the way TF Serving
readiness probes work; an open port is not readiness: a model may still fail), and a server that
does not get ready is always stopped.

>>> with start_model_server("models/digits", "digits") as server:   # doctest: +SKIP
...     with connect(server.grpc_url) as client:
...         client.predict("digits", x)
>>> server = start_local_server(Path("models"), port=8500, rest_port=8501)  # doctest: +SKIP
>>> server.grpc_target, server.rest_url
('127.0.0.1:8500', 'http://127.0.0.1:8501')
>>> server.stop()
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from tfship.client.connect import connect

from tfship.errors import ConfigError, DeadlineExceededError, NotFoundError, ServingError, UnavailableError

if TYPE_CHECKING:
    from tfship.serving.config.model_config import ModelEntry

__all__ = ["ModelServer", "free_port", "start_model_server", "server_command", "stop_process", "wait_until_serving",
           "LocalServer", "discover_models", "start_local_server", "MODEL_NAME_RE"]


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15.0, *, sig: int = signal.SIGTERM) -> int:
    """SIGTERM (the server drains in-flight requests; ``sig`` for other programs' graceful stop),
    wait up to ``timeout`` s, then SIGKILL. Returns the exit status."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    return process.returncode


def server_command() -> list[str]:
    """How to run tfship-model-server with this interpreter (no PATH lookup, same venv)."""
    return [sys.executable, "-c", "from tfship.serving.main import main; main()"]


@dataclass
class ModelServer:
    """A running tfship-model-server. ``stop()`` (or leaving the ``with`` block) terminates it."""

    process: subprocess.Popen[bytes]
    grpc_port: int
    rest_port: int
    log_path: Path
    args: list[str] = field(default_factory=list)
    host: str = "127.0.0.1"

    @property
    def grpc_url(self) -> str:
        return f"grpc://{self.host}:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        """``""`` when the server runs without REST (``--rest_api_port=0``)."""
        return f"http://{self.host}:{self.rest_port}" if self.rest_port else ""

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL. Returns the exit status."""
        return stop_process(self.process, timeout)

    def __enter__(self) -> ModelServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_model_server(model_base_path: str | os.PathLike[str] | None = None,
                       model_name: str | None = None, *, model_config_file: str | None = None,
                       wait_for: Sequence[tuple[str, int | None]] | None = None,
                       extra_args: Sequence[str] = (), timeout: float = 120.0, rest: bool = True,
                       log_path: str | os.PathLike[str] | None = None,
                       env: dict[str, str] | None = None, grpc_port: int | None = None,
                       rest_port: int | None = None, host: str = "127.0.0.1") -> ModelServer:
    """Start tfship-model-server on free ports and wait until it serves.

    ``rest=False`` starts no REST server (``--rest_api_port=0``). ``wait_for`` lists
    ``(model, version or None)`` pairs that must be AVAILABLE (default: the single ``model_name``).
    ``grpc_port``/``rest_port`` pin the ports (restarting a replica where its clients expect it).
    ``host`` is the loopback address to bind (127.0.0.2 ... stand for pods on one port).
    Raises :class:`UnavailableError` with the server's log tail if it exits or is not ready within
    ``timeout`` seconds.
    """
    grpc_port = grpc_port or free_port()
    rest_port = (rest_port or free_port()) if rest else 0
    while rest and rest_port == grpc_port:
        rest_port = free_port()
    # Loopback only: tfship-model-server binds 0.0.0.0 by default, like TF Serving.
    args = [f"--port={grpc_port}", f"--rest_api_port={rest_port}", f"--host={host}"]
    if model_config_file:
        args.append(f"--model_config_file={model_config_file}")
    else:
        if model_base_path is None:
            raise ValueError("give model_base_path (and model_name) or model_config_file")
        base = Path(model_base_path).resolve()
        args += [f"--model_name={model_name or base.name}", f"--model_base_path={base}"]
    args += list(extra_args)
    if log_path is None:
        handle, name = tempfile.mkstemp(prefix="tfship-model-server-", suffix=".log")
        os.close(handle)
        log_path = name
    log_file = open(log_path, "wb")  # noqa: SIM115 - handed to the child, closed below
    run_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
    process = subprocess.Popen(server_command() + args, stdout=log_file, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, env=run_env)
    log_file.close()
    server = ModelServer(process, grpc_port, rest_port, Path(log_path), args, host)
    targets: list[tuple[str, int | None]] = (
        list(wait_for) if wait_for else [(model_name or Path(str(model_base_path)).name, None)])

    def check_alive() -> None:
        if server.process.poll() is not None:
            raise UnavailableError(f"tfship-model-server exited with status {server.process.returncode} "
                                   f"before serving. Log tail:\n{server.log_tail()}")

    try:
        wait_until_serving(server.grpc_url, targets, rest_url=server.rest_url or None,
                           timeout=timeout, check_alive=check_alive,
                           describe=lambda: f". Log tail:\n{server.log_tail()}")
    except BaseException:
        server.stop()
        raise
    return server


def wait_until_serving(grpc_url: str, models: Sequence[tuple[str, int | None]], *,
                       rest_url: str | None = None, timeout: float = 120.0,
                       check_alive: Callable[[], None] = lambda: None,
                       describe: Callable[[], str] = lambda: "") -> dict[str, int]:
    """Block until a server really serves; the one readiness wait of every launcher.

    Every ``(model, version or None)`` must report that version (or any) AVAILABLE through
    GetModelStatus over gRPC (TF Serving's own readiness signal; an open port is not: a model may
    still be loading or fail), then ``rest_url``, if given, must answer too (TF Serving opens REST
    just after gRPC). ``check_alive()`` runs between polls and raises when the server is gone
    (process or container exited). Returns ``{model: available version}``.

    Raises :class:`UnavailableError` when a version fails to load or ``timeout`` passes, with
    ``describe()`` (e.g. the server's log tail) appended.
    """
    deadline = time.monotonic() + timeout
    ready: dict[str, int] = {}
    last = "no answer yet"
    # gRPC for every model first, then the REST port for the first one
    stages = [(grpc_url, list(models))] + ([(rest_url, list(models)[:1])] if rest_url else [])
    for url, pending in stages:
        with connect(url) as client:
            while pending:
                check_alive()
                model, version = pending[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    names = sorted({m for m, _ in pending})
                    raise UnavailableError(f"{names} did not become AVAILABLE on {url} within {timeout:g} s "
                                           f"(last status: {last}){describe()}")
                try:
                    ready[model] = client.wait_until_available(model, version, timeout=min(left, 2.0))
                    pending.pop(0)
                except (UnavailableError, NotFoundError, DeadlineExceededError) as exc:
                    last = exc.message  # not loaded yet (or not listening yet): poll again
                except ServingError as exc:
                    raise UnavailableError(f"{model!r} failed to load: {exc}{describe()}") from None
    return ready


#: model names tfship accepts (letters, digits, ``_ . -``); they appear in URLs and file names
MODEL_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]+")


def discover_models(models_dir: Path) -> list[ModelEntry]:
    """One entry per subdir of ``models_dir`` that has at least one numeric version dir."""
    # serving's config and version rules need tensorflow_serving: imported here so the TF-free
    # client install can still import this module (the pytest plugin does at every pytest start)
    from tfship.serving.config.model_config import ModelEntry
    from tfship.serving.core.versions import discover_versions

    models_dir = Path(models_dir).resolve()
    if not models_dir.is_dir():
        raise ConfigError(f"{models_dir} is not a directory; pass the base dir that holds "
                          "NAME/VERSION/ SavedModels (e.g. the --base of tfship export)")
    entries = []
    for child in sorted(models_dir.iterdir()):
        if not child.is_dir() or child.name.startswith("."):
            continue
        try:
            versions = discover_versions(child)
        except OSError:
            continue
        if not versions:
            continue
        if not MODEL_NAME_RE.fullmatch(child.name):
            raise ConfigError(f"model dir name {child.name!r} is not a valid model name: use "
                              "letters, digits, '_', '.' and '-' only (rename the directory)")
        entries.append(ModelEntry(name=child.name, base_path=str(child)))
    if not entries:
        raise ConfigError(f"no models found under {models_dir}: expected NAME/VERSION/saved_model.pb "
                          "(export one with `tfship export MODEL --base DIR --name NAME`)")
    return entries


@dataclass
class LocalServer(ModelServer):
    """A running ``tfship-model-server`` subprocess started by :func:`start_local_server`."""

    models: list[str] = field(default_factory=list)
    config_path: Path | None = None
    _tmpdir: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @property
    def grpc_target(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    def wait(self) -> int:
        return self.process.wait()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (the server drains in-flight requests), then SIGKILL after ``timeout``."""
        rc = super().stop(timeout)
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None
        return rc


def start_local_server(
    models_dir: Path | None = None,
    *,
    config_file: Path | None = None,
    host: str = "127.0.0.1",
    port: int = 8500,
    rest_port: int = 8501,
    extra_flags: tuple[str, ...] = (),
    timeout: float = 300.0,
    stdout: IO[bytes] | None = None,
    stderr: IO[bytes] | None = None,
) -> LocalServer:
    """Start the server on ``models_dir`` (or ``config_file``) and wait for every model.

    Raises :class:`UnavailableError` (the CLI exits 3) with the server's own failure message when it
    exits or does not make every model AVAILABLE within ``timeout`` seconds.
    """
    for p in (port, rest_port):
        _check_port_free(host, p)
    from tfship.serving.config.model_config import format_model_config

    tmpdir = None
    if config_file is None:
        if models_dir is None:
            raise ConfigError("pass a models dir or a model config file")
        entries = discover_models(models_dir)
        tmpdir = tempfile.TemporaryDirectory(prefix="tfship-serve-")
        config_file = Path(tmpdir.name) / "models.config"
        config_file.write_text(format_model_config(entries))
        names = [e.name for e in entries]
    else:
        from tfship.serving.config.model_config import model_entries, read_model_config_file

        names = [e.name for e in model_entries(read_model_config_file(config_file))]
    out_log = Path(tmpdir.name if tmpdir else tempfile.mkdtemp(prefix="tfship-serve-")) / "stdout"
    args = [
        *server_command(), f"--host={host}", f"--port={port}", f"--rest_api_port={rest_port}",
        f"--model_config_file={config_file}", *extra_flags,
    ]
    with open(out_log, "wb") as out:
        process = subprocess.Popen(args, stdout=stdout or out, stderr=stderr,
                                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
                                   preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    server = LocalServer(process, port, rest_port, out_log, args, host=host, models=names,
                         config_path=config_file, _tmpdir=tmpdir)

    def check_alive() -> None:
        if process.poll() is not None:
            message = out_log.read_text(errors="replace").strip().splitlines()
            failure = next((m for m in message if m.startswith("Failed to start server")),
                           f"tfship-model-server exited with code {process.returncode}")
            raise UnavailableError(failure)

    try:
        wait_until_serving(server.grpc_url, [(n, None) for n in names], rest_url=server.rest_url or None,
                           timeout=timeout, check_alive=check_alive,
                           describe=lambda: " (see the server log above; a model with no version dir "
                                            "waits forever, like TF Serving)")
    except BaseException:
        server.stop()
        raise
    return server


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the parent dies, so a killed ``tfship serve`` leaves no
    server behind (Linux prctl PR_SET_PDEATHSIG)."""
    import ctypes

    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1


def _check_port_free(host: str, port: int) -> None:
    if not port:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"port {host}:{port} is not free ({exc.strerror}); stop what uses it "
                              "or pick another with --port / --rest-port") from None

