"""Run a TF Serving image as a local server container, wait until it serves, stop it.

Two ways to get models into the container:

* baked in (``models_dir=None``): an image from ``tfship build`` already has them;
* bind-mounted READ-ONLY (``models_dir=DIR``): every model base path under ``DIR`` is mounted at
  ``/models/NAME`` and a generated model config at ``/etc/tfship-run``; new version directories
  dropped into ``DIR/NAME/`` are picked up by the server's file-system poll.

Ports are published on ``127.0.0.1`` by default. Engines without a bridge network (e.g.
``dockerd --bridge=none``, as in tfship's CI) cannot publish ports: the container then shares the
host network and the server is told to listen on the requested ports on 127.0.0.1 directly.

>>> with start_container("acme/mnist:1", grpc_port=8500, rest_port=8501) as server:  # doctest: +SKIP
...     server.wait_until_available()
...     print(server.grpc_url)
grpc://127.0.0.1:8500
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfship.deploy.docker.context import MODELS_ROOT, discover_models
from tfship.deploy.docker.engine import connect, require_image, uses_host_network
from tfship.deploy.launch import wait_until_serving
from tfship.serving.config import ModelEntry, format_model_config

from tfship.errors import DockerError, UnavailableError

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

__all__ = ["ServingContainer", "start_container", "stop_containers", "SERVE_LABEL"]

#: label on every container tfship starts (``tfship stop`` finds them by it)
SERVE_LABEL = "io.tfship.serve"
RUN_CONFIG_DIR = "/etc/tfship-run"
#: the unprivileged uid:gid servers run as when the image does not name a non-root user
DEFAULT_USER = "10001:10001"


@dataclass
class ServingContainer:
    """A running server container; use as a context manager to stop and remove it on exit."""

    container: Container
    models: tuple[str, ...]
    host: str
    grpc_port: int
    rest_port: int
    config_dir: Path | None = None
    _stopped: bool = field(default=False, repr=False)

    @property
    def grpc_url(self) -> str:
        return f"grpc://{self.host}:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.rest_port}"

    @property
    def name(self) -> str:
        return str(self.container.name)

    def logs(self, tail: int = 40) -> str:
        """The last ``tail`` lines the server wrote (stdout and stderr)."""
        try:
            return self.container.logs(tail=tail).decode("utf-8", "replace")
        except Exception as exc:  # container already removed
            return f"(logs unavailable: {exc})"

    def wait_until_available(self, timeout: float = 180.0) -> dict[str, int]:
        """Block until every model has a version AVAILABLE (GetModelStatus over gRPC) and the
        REST port answers too (TF Serving starts REST just after gRPC).

        Returns ``{model: version}``. Raises :class:`DockerError` with the last log lines when
        the container exits first or ``timeout`` passes.
        """
        try:
            return wait_until_serving(self.grpc_url, [(m, None) for m in self.models], rest_url=self.rest_url,
                                      timeout=timeout, check_alive=self._raise_if_exited,
                                      describe=lambda: f". Last log lines:\n{self.logs()}")
        except UnavailableError as exc:
            self._raise_if_exited()
            raise DockerError(f"Container {self.name} did not serve: {exc.message}") from None

    def _raise_if_exited(self) -> None:
        self.container.reload()
        if self.container.status in ("exited", "dead"):
            code = self.container.attrs.get("State", {}).get("ExitCode")
            raise DockerError(
                f"Container {self.name} exited with code {code} before serving. "
                f"Last log lines:\n{self.logs()}"
            )

    def stop(self, timeout: int = 10) -> int | None:
        """Stop (SIGTERM, then SIGKILL after ``timeout`` s) and remove; return the exit code."""
        if self._stopped:
            return None
        self._stopped = True
        code = None
        try:
            with contextlib.suppress(Exception):
                self.container.stop(timeout=timeout)
            self.container.reload()
            code = self.container.attrs.get("State", {}).get("ExitCode")
            self.container.remove(force=True)
        finally:
            if self.config_dir is not None:
                shutil.rmtree(self.config_dir, ignore_errors=True)
        return code

    def __enter__(self) -> ServingContainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _check_port_free(host: str, port: int, flag: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            raise DockerError(
                f"Port {port} on {host} is already in use. Pass a free port with {flag}, or stop "
                "the server using it (`tfship stop` stops servers tfship started)."
            ) from None


def _non_root(image: Any) -> str | None:
    user = (image.attrs.get("Config") or {}).get("User") or ""
    return None if user and user.split(":")[0] not in ("root", "0") else DEFAULT_USER


def start_container(
    image: str,
    *,
    models_dir: str | os.PathLike[str] | None = None,
    grpc_port: int = 8500,
    rest_port: int = 8501,
    host: str = "127.0.0.1",
    name: str | None = None,
    extra_args: tuple[str, ...] = (),
    poll_seconds: int = 1,
    client: docker.DockerClient | None = None,
) -> ServingContainer:
    """Start ``image`` as a server (see module docstring); does not wait for the models.

    ``image`` must be present locally (checked first; nothing is pulled). Without ``models_dir``
    the image must have been built by ``tfship build`` (its ``io.tfship.models`` label names the
    models to wait for).
    """
    client = client or connect()
    img = require_image(client, image, role="image")
    labels = dict(img.labels or {})
    command: list[str] = list((img.attrs.get("Config") or {}).get("Cmd") or [])
    mounts: dict[str, dict[str, str]] = {}
    config_dir: Path | None = None
    if models_dir is not None:
        sources = discover_models(models_dir)
        models = tuple(m.name for m in sources)
        config_dir = Path(tempfile.mkdtemp(prefix="tfship-serve-"))
        os.chmod(config_dir, 0o755)
        config = format_model_config([ModelEntry(m, f"{MODELS_ROOT}/{m}") for m in models])
        (config_dir / "models.config").write_text(config)
        os.chmod(config_dir / "models.config", 0o644)
        for source in sources:
            mounts[str(source.base_path)] = {"bind": f"{MODELS_ROOT}/{source.name}", "mode": "ro"}
        mounts[str(config_dir)] = {"bind": RUN_CONFIG_DIR, "mode": "ro"}
        command = [a for a in command if not a.startswith("--model_config_file=")]
        command.insert(0, f"--model_config_file={RUN_CONFIG_DIR}/models.config")
    else:
        models = tuple(m for m in labels.get("io.tfship.models", "").split(",") if m)
        if not models:
            raise DockerError(
                f"Image {image!r} has no io.tfship.models label, so tfship does not know which "
                "models it serves: build it with `tfship build` or pass the models directory."
            )
    command.append(f"--file_system_poll_wait_seconds={poll_seconds}")
    command.extend(extra_args)

    _check_port_free(host, grpc_port, "--port")
    _check_port_free(host, rest_port, "--rest-port")
    run_kwargs: dict[str, Any] = {}
    if uses_host_network(client):
        # No bridge: share the host's network and move the server to the requested ports.
        # `--host` is tfship-model-server's bind address; TF Serving warns and ignores it.
        run_kwargs["network_mode"] = "host"
        command += [f"--port={grpc_port}", f"--rest_api_port={rest_port}", f"--host={host}"]
    else:
        run_kwargs["ports"] = {"8500/tcp": (host, grpc_port), "8501/tcp": (host, rest_port)}
    user = _non_root(img)
    if user:
        run_kwargs["user"] = user
    container_labels = {
        SERVE_LABEL: "1",
        "io.tfship.models": ",".join(models),
        "io.tfship.grpc-url": f"grpc://{host}:{grpc_port}",
        "io.tfship.rest-url": f"http://{host}:{rest_port}",
    }
    if config_dir is not None:
        container_labels["io.tfship.run-config-dir"] = str(config_dir)
    try:
        container = client.containers.run(
            image,
            command=command,
            name=name,
            detach=True,
            labels=container_labels,
            volumes=mounts,
            read_only=True,
            tmpfs={"/tmp": "rw,size=256m"},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            init=True,
            **run_kwargs,
        )
    except Exception as exc:
        if config_dir is not None:
            shutil.rmtree(config_dir, ignore_errors=True)
        text = str(exc)
        if "address already in use" in text or "port is already allocated" in text:
            raise DockerError(
                f"A port is already in use ({text.strip()}); pass free ports with --port / "
                "--rest-port or stop the other server (`tfship stop`)."
            ) from None
        raise DockerError(f"Could not start a container from {image!r}: {text.strip()}") from None
    return ServingContainer(container, models, host, grpc_port, rest_port, config_dir)


def stop_containers(
    name: str | None = None, *, timeout: int = 10, client: docker.DockerClient | None = None
) -> list[str]:
    """Stop and remove the server containers tfship started (or only ``name``); their names."""
    client = client or connect()
    filters: dict[str, Any] = {"label": SERVE_LABEL}
    if name:
        filters["name"] = name
    stopped = []
    for container in client.containers.list(all=True, filters=filters):
        if name and container.name != name:
            continue
        with contextlib.suppress(Exception):
            container.stop(timeout=timeout)
        config_dir = (container.labels or {}).get("io.tfship.run-config-dir")
        container.remove(force=True)
        if config_dir and Path(config_dir).name.startswith("tfship-serve-"):
            shutil.rmtree(config_dir, ignore_errors=True)
        stopped.append(str(container.name))
    return stopped
