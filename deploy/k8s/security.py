"""The pod's and the server container's security contexts (Pod Security Standards "restricted").

The server runs as the image's unprivileged user (``Dockerfile.serving``: ``USER 10001:10001``)
with a read-only root filesystem, no privilege escalation, no capabilities and the runtime's
default seccomp profile. It needs nothing writable but ``/tmp`` (an emptyDir, see render.py).
"""

from __future__ import annotations

from typing import Any

__all__ = ["IMAGE_UID", "pod_security_context", "container_security_context"]

#: the uid:gid ``Dockerfile.serving`` runs the server as
IMAGE_UID = 10001


def pod_security_context(uid: int = IMAGE_UID) -> dict[str, Any]:
    """Pod-level: non-root uid/gid and RuntimeDefault seccomp for every container."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context(uid: int = IMAGE_UID) -> dict[str, Any]:
    """Container-level: repeated from the pod so the container is safe even if copied alone
    (KServe's predictor takes only this one)."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
