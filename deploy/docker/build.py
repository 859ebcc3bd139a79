"""Build a deployment image from a context written by :func:`write_build_context`.

>>> ctx = write_build_context("models", "/tmp/ctx")                       # doctest: +SKIP
>>> build_image(ctx, "acme/mnist:1", on_progress=print)                  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tfship.deploy.docker.context import DEFAULT_BASE_IMAGE, BuildContext
from tfship.deploy.docker.engine import connect, require_image

from tfship.errors import DockerError

if TYPE_CHECKING:
    import docker

__all__ = ["BuiltImage", "build_image"]


@dataclass(frozen=True)
class BuiltImage:
    """The result of a build: tag, image id, its labels and how long the build took."""

    tag: str
    id: str
    labels: dict[str, str]
    seconds: float


def build_image(
    context: BuildContext,
    tag: str,
    *,
    base_image: str = DEFAULT_BASE_IMAGE,
    client: docker.DockerClient | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> BuiltImage:
    """Build ``context`` as ``tag`` on ``base_image`` through the docker SDK.

    The base image must already be present (checked first: tfship never pulls). Build output is
    streamed line by line to ``on_progress``. Raises :class:`DockerError` with the builder's
    message when the build fails.
    """
    client = client or connect()
    require_image(client, base_image, role="base image")
    started = time.monotonic()
    try:
        stream = client.api.build(
            path=str(context.path),
            tag=tag,
            buildargs={"BASE_IMAGE": base_image},
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
        )
        image_id = None
        for chunk in stream:
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                raise DockerError(f"Building {tag!r} failed: {detail.strip()}")
            text = chunk.get("stream", "")
            if on_progress and text.strip():
                for line in text.rstrip("\n").splitlines():
                    on_progress(line)
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
    except DockerError:
        raise
    except Exception as exc:  # APIError, connection loss mid-build
        raise DockerError(f"Building {tag!r} failed: {exc}") from None
    image = client.images.get(tag)
    return BuiltImage(tag, image_id or image.id, dict(image.labels or {}), time.monotonic() - started)
