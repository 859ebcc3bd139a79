"""Exit codes scripts can trust, and the one table that maps tfship's errors to them.

The library raises the errors of :mod:`tfship.errors` and never decides how a process ends; the
CLI's edge looks each error's class up here, the way :mod:`tfship.serving.grpc.status` maps the
same errors to gRPC codes at the server's edge.
"""

from __future__ import annotations

from tfship.errors import DockerUnavailableError, SwapError, TfshipError, UnavailableError

__all__ = ["EXIT_OK", "EXIT_CHECK_FAILED", "EXIT_USAGE", "EXIT_UNAVAILABLE", "EXIT_CODES", "exit_code"]

EXIT_OK = 0
#: a check failed: parity mismatch, a tampered version, a swap refused or rolled back
EXIT_CHECK_FAILED = 1
#: usage or input error (click's own code for a bad option, too)
EXIT_USAGE = 2
#: a server or the Docker engine could not be reached or started
EXIT_UNAVAILABLE = 3

#: error class -> exit code; an error takes the code of the nearest class in its MRO.
EXIT_CODES: dict[type[TfshipError], int] = {
    TfshipError: EXIT_USAGE,
    SwapError: EXIT_CHECK_FAILED,
    UnavailableError: EXIT_UNAVAILABLE,
    DockerUnavailableError: EXIT_UNAVAILABLE,
}


def exit_code(error: TfshipError) -> int:
    """The exit code for ``error`` (see :data:`EXIT_CODES`)."""
    return next(EXIT_CODES[cls] for cls in type(error).__mro__ if cls in EXIT_CODES)
