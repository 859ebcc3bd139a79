"""Connecting to the Docker engine through the docker SDK, with actionable errors.

Every tfship operation that touches Docker goes through :func:`connect` and checks images with
:func:`require_image` BEFORE building or running, so the engine is never asked to pull anything
implicitly (a pull would hang or fail on machines without registry access, and silently fetching
a different image than the one tested is worse).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from tfship.errors import DockerError, DockerUnavailableError

if TYPE_CHECKING:
    import docker
    from docker.models.images import Image

__all__ = ["connect", "require_image", "image_exists", "uses_host_network"]


def _docker_module():  # type: ignore[no-untyped-def]
    try:
        import docker
    except ImportError:
        raise DockerError(
            "The docker Python SDK is not installed. Install it with: pip install 'tfship[docker]'"
        ) from None
    return docker


def connect(timeout: float = 600) -> docker.DockerClient:
    """A client for the engine named by ``DOCKER_HOST`` (default: the local socket).

    Raises :class:`DockerUnavailableError` saying how to start the engine or point
    ``DOCKER_HOST`` at it when it does not answer.
    """
    docker = _docker_module()
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = docker.from_env(timeout=int(timeout))
        client.ping()
    except Exception as exc:  # the SDK raises DockerException, requests and socket errors
        raise DockerUnavailableError(
            f"Cannot reach the Docker engine at {where}: {_short(exc)}. Start it (e.g. "
            "`sudo systemctl start docker`, or Docker Desktop) or set DOCKER_HOST to a running "
            "engine (e.g. DOCKER_HOST=unix:///run/user/1000/docker.sock)."
        ) from None
    return client


def image_exists(client: docker.DockerClient, ref: str) -> bool:
    """Whether ``ref`` is present in the engine's image store (never pulls)."""
    docker = _docker_module()
    try:
        client.images.get(ref)
    except docker.errors.ImageNotFound:
        return False
    except docker.errors.APIError as exc:  # e.g. an invalid reference
        raise DockerError(f"Invalid image reference {ref!r}: {_short(exc)}") from None
    return True


def require_image(client: docker.DockerClient, ref: str, *, role: str = "base image") -> Image:
    """The local image ``ref``; :class:`DockerError` telling how to get it when it is missing."""
    if not image_exists(client, ref):
        hint = (
            "pass --base-image with an image you have locally"
            if role == "base image"
            else "build it with `tfship build MODELS_DIR --tag TAG` or pass --image"
        )
        raise DockerError(
            f"The {role} {ref!r} is not present in the Docker engine. Pull it first "
            f"(`docker pull {ref}`) or {hint}. tfship never pulls images implicitly."
        )
    return client.images.get(ref)


def uses_host_network(client: docker.DockerClient) -> bool:
    """True when the engine has no ``bridge`` network (e.g. ``dockerd --bridge=none``).

    Such engines cannot publish ports; containers then share the host's network namespace and
    the server is told which ports to use instead.
    """
    return not client.networks.list(names=["bridge"])


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
