"""``tfship serve MODELS_DIR --docker``: run a server container in the foreground until Ctrl-C.

Image choice: no ``image`` means the official base image with ``models_dir`` bind-mounted
read-only (new versions dropped into ``models_dir/NAME/`` get served); an image built by
``tfship build`` serves its baked-in models unless ``mount=True`` asks for the mounted dir.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from tfship.deploy.docker.context import DEFAULT_BASE_IMAGE
from tfship.deploy.docker.engine import connect, require_image
from tfship.deploy.docker.run import ServingContainer, start_container

if TYPE_CHECKING:
    import docker

__all__ = ["serve_in_docker", "start_for_models"]


def start_for_models(
    models_dir: str | os.PathLike[str] | None,
    *,
    image: str | None = None,
    mount: bool | None = None,
    grpc_port: int = 8500,
    rest_port: int = 8501,
    host: str = "127.0.0.1",
    name: str | None = None,
    timeout: float = 300.0,
    client: docker.DockerClient | None = None,
) -> ServingContainer:
    """Start the right container for ``models_dir``/``image`` and wait until it serves.

    ``mount=None`` mounts ``models_dir`` unless ``image`` carries baked-in tfship models.
    On a failed start the container is removed and :class:`DockerError` carries its last logs.
    """
    client = client or connect()
    ref = image or DEFAULT_BASE_IMAGE
    labels = require_image(client, ref, role="image" if image else "base image").labels or {}
    if mount is None:
        mount = models_dir is not None and not labels.get("io.tfship.models")
    server = start_container(
        ref,
        models_dir=models_dir if mount else None,
        grpc_port=grpc_port,
        rest_port=rest_port,
        host=host,
        name=name,
        client=client,
    )
    try:
        server.wait_until_available(timeout=timeout)
    except BaseException:
        server.stop(timeout=5)
        raise
    return server


def serve_in_docker(
    models_dir: str | os.PathLike[str] | None,
    *,
    echo: Callable[[str], None] = print,
    **options: object,
) -> int | None:
    """Start (see :func:`start_for_models`), print the URLs, stream the server log until Ctrl-C
    or the container exits, then stop and remove the container; returns its exit code."""
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (e.g. from a process manager) cleans up exactly like Ctrl-C.
        signal.signal(signal.SIGTERM, _interrupt)
    server = start_for_models(models_dir, **options)  # type: ignore[arg-type]
    try:
        echo(
            f"serving {', '.join(server.models)} from container {server.name}\n"
            f"  gRPC {server.grpc_url}\n  REST {server.rest_url}\n"
            "Ctrl-C stops and removes the container (`tfship stop` from another shell)."
        )
        for chunk in server.container.logs(stream=True, follow=True):
            echo(chunk.decode("utf-8", "replace").rstrip("\n"))
    except KeyboardInterrupt:
        echo("stopping ...")
    finally:
        code = server.stop()
    return code


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
