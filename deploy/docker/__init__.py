"""Deployment images: ``Dockerfile.serving`` build contexts, image builds and serving containers,
all through the docker SDK (never the docker CLI)."""

from __future__ import annotations

from tfship.deploy.docker.context import (
    DEFAULT_BASE_IMAGE,
    BuildContext,
    ModelSource,
    discover_models,
    dockerfile_template,
    write_build_context,
)

__all__ = [
    "DEFAULT_BASE_IMAGE",
    "BuildContext",
    "ModelSource",
    "discover_models",
    "dockerfile_template",
    "write_build_context",
]
