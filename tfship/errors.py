"""The one exception hierarchy of tfship.

Every error tfship raises derives from :class:`TfshipError`. Errors that travel over the wire
(server -> client) carry a canonical status :class:`Code` that maps 1:1 to gRPC codes and, per
TF Serving's ``ToHTTPStatusCode``, to HTTP status codes. The server raises them, the gRPC and REST
frontends turn them into wire errors, and the clients turn wire errors back into the same classes,
so application code catches one tree whatever the transport::

    TfshipError
    ├── ExportError                      export could not produce a servable version
    │   ├── ModelSourceError             path missing, not a model, custom object missing ...
    │   ├── SignatureError               input shape unknown, unsupported signature
    │   ├── VersionExistsError           explicit --version already on disk
    │   └── VerificationError            reloaded SavedModel differs from the in-memory model
    ├── ConfigError                      bad model/batching/monitoring config, bad CLI option
    ├── ParityError                      served outputs differ from the reference outputs
    ├── DockerError                      image missing, container exited, build failed
    │   └── DockerUnavailableError       the Docker engine does not answer
    ├── SwapError (has .record)          a hot-swap was refused or rolled back
    ├── CorruptRecordError               a TFRecord file (capture, warmup) has a bad length/CRC
    └── ServingError (has .code)         an RPC failed; one subclass per canonical code
        ├── CancelledError               CANCELLED            499
        ├── UnknownError                 UNKNOWN              500
        ├── InvalidArgumentError         INVALID_ARGUMENT     400
        ├── DeadlineExceededError        DEADLINE_EXCEEDED    504
        ├── NotFoundError                NOT_FOUND            404
        ├── AlreadyExistsError           ALREADY_EXISTS       409
        ├── PermissionDeniedError        PERMISSION_DENIED    403
        ├── ResourceExhaustedError       RESOURCE_EXHAUSTED   429
        ├── FailedPreconditionError      FAILED_PRECONDITION  400
        ├── AbortedError                 ABORTED              409
        ├── OutOfRangeError              OUT_OF_RANGE         400
        ├── UnimplementedError           UNIMPLEMENTED        501
        ├── InternalError                INTERNAL             500
        ├── UnavailableError             UNAVAILABLE          503
        ├── DataLossError                DATA_LOSS            500
        └── UnauthenticatedError         UNAUTHENTICATED      401

This module imports nothing heavy (no grpc, no TensorFlow) so every package can use it.
"""

from __future__ import annotations

import enum
from typing import Any

__all__ = [
    "Code",
    "HTTP_STATUS",
    "TfshipError",
    "ExportError",
    "ModelSourceError",
    "SignatureError",
    "VersionExistsError",
    "VerificationError",
    "ConfigError",
    "ParityError",
    "DockerError",
    "DockerUnavailableError",
    "SwapError",
    "CorruptRecordError",
    "ServingError",
    "CancelledError",
    "UnknownError",
    "InvalidArgumentError",
    "DeadlineExceededError",
    "NotFoundError",
    "AlreadyExistsError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "FailedPreconditionError",
    "AbortedError",
    "OutOfRangeError",
    "UnimplementedError",
    "InternalError",
    "UnavailableError",
    "DataLossError",
    "UnauthenticatedError",
    "error_for_code",
    "code_for_http_status",
]


class Code(enum.IntEnum):
    """Canonical status codes: the same numbers in gRPC, ``tensorflow.error.Code`` and absl."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


#: TF Serving's ``ToHTTPStatusCode`` (http_server.cc), TF Serving compat spec §6.7.
HTTP_STATUS: dict[Code, int] = {
    Code.OK: 200,
    Code.CANCELLED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
    Code.UNAUTHENTICATED: 401,
}


class TfshipError(Exception):
    """Base of every tfship error. ``str(err)`` is the full, actionable message."""


class ExportError(TfshipError):
    """An export could not produce a servable version; nothing was published."""


class ModelSourceError(ExportError):
    """The model to export could not be loaded (missing path, not a model, missing custom object)."""


class SignatureError(ExportError):
    """A serving signature could not be built (e.g. unknown input shape of an unbuilt model)."""


class VersionExistsError(ExportError):
    """The requested version already exists; tfship never overwrites a published version."""


class VerificationError(ExportError):
    """The reloaded SavedModel does not reproduce the in-memory model within tolerance."""


class ConfigError(TfshipError):
    """A configuration file or option is invalid."""


class ParityError(TfshipError):
    """Served outputs differ from the reference outputs beyond tolerance."""


class DockerError(TfshipError):
    """The Docker engine, an image or a container is not in the state tfship needs."""


class DockerUnavailableError(DockerError):
    """The Docker engine does not answer (not running, or ``DOCKER_HOST`` points elsewhere)."""


class SwapError(TfshipError):
    """A hot-swap was refused (guard rail) or failed and was rolled back.

    ``record`` is the history record (:class:`tfship.deploy.history.SwapRecord`) of a swap that was
    tried and failed, with its reason and, on a fleet, each replica's result; None when the swap
    was refused before anything changed.
    """

    def __init__(self, message: str, *, record: Any = None) -> None:
        super().__init__(message)
        self.record = record


class CorruptRecordError(TfshipError):
    """A TFRecord file holds a record whose length or data CRC does not match.

    ``path`` and ``offset`` (of the record's header) say where; records before it are intact.
    """

    def __init__(self, path: str, offset: int, problem: str) -> None:
        self.path, self.offset, self.problem = path, offset, problem
        super().__init__(f"{path}: corrupt record at byte offset {offset}: {problem}. The records "
                         "before it are intact; the file was damaged after it was written (a torn "
                         "last record alone is not an error).")


class ServingError(TfshipError):
    """An RPC to a model server failed, or the server refuses a request.

    Carries the canonical ``code``, the server's ``message`` and, where known, the ``model``,
    ``version`` and ``signature`` the request addressed. ``str(err)`` is the message plus any
    ``hint`` the client added (e.g. the versions the model does have).
    """

    code: Code = Code.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        model: str | None = None,
        version: int | None = None,
        signature: str | None = None,
        hint: str | None = None,
        details: Any = None,
    ) -> None:
        self.message = message
        self.model = model
        self.version = version
        self.signature = signature
        self.hint = hint
        self.details = details
        super().__init__(message if not hint else f"{message}\n{hint}")

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code.name}, message={self.message!r})"


def _coded(name: str, code: Code, doc: str) -> type[ServingError]:
    return type(name, (ServingError,), {"code": code, "__doc__": doc, "__module__": __name__})


CancelledError = _coded("CancelledError", Code.CANCELLED, "The request was cancelled.")
UnknownError = _coded("UnknownError", Code.UNKNOWN, "The server failed with an unknown error.")
InvalidArgumentError = _coded(
    "InvalidArgumentError", Code.INVALID_ARGUMENT, "The request is malformed or does not fit the signature."
)
DeadlineExceededError = _coded(
    "DeadlineExceededError", Code.DEADLINE_EXCEEDED, "The request ran past its deadline."
)
NotFoundError = _coded(
    "NotFoundError", Code.NOT_FOUND, "The model or version is not (yet) available on the server."
)
AlreadyExistsError = _coded("AlreadyExistsError", Code.ALREADY_EXISTS, "The entity already exists.")
PermissionDeniedError = _coded(
    "PermissionDeniedError", Code.PERMISSION_DENIED, "The caller may not do this."
)
ResourceExhaustedError = _coded(
    "ResourceExhaustedError", Code.RESOURCE_EXHAUSTED, "A queue or size limit was hit; retry later or send less."
)
FailedPreconditionError = _coded(
    "FailedPreconditionError", Code.FAILED_PRECONDITION, "The server is not in a state to do this."
)
AbortedError = _coded("AbortedError", Code.ABORTED, "The operation was aborted.")
OutOfRangeError = _coded("OutOfRangeError", Code.OUT_OF_RANGE, "A value is out of range.")
UnimplementedError = _coded(
    "UnimplementedError", Code.UNIMPLEMENTED, "The server does not support this operation."
)
InternalError = _coded("InternalError", Code.INTERNAL, "The server hit an internal error.")
UnavailableError = _coded(
    "UnavailableError", Code.UNAVAILABLE, "The server cannot be reached or is shutting down (transient)."
)
DataLossError = _coded("DataLossError", Code.DATA_LOSS, "Data was lost or corrupted.")
UnauthenticatedError = _coded(
    "UnauthenticatedError", Code.UNAUTHENTICATED, "The request lacks valid credentials."
)

_BY_CODE: dict[Code, type[ServingError]] = {
    cls.code: cls
    for cls in (
        CancelledError, UnknownError, InvalidArgumentError, DeadlineExceededError, NotFoundError,
        AlreadyExistsError, PermissionDeniedError, ResourceExhaustedError, FailedPreconditionError,
        AbortedError, OutOfRangeError, UnimplementedError, InternalError, UnavailableError,
        DataLossError, UnauthenticatedError,
    )
}


def error_for_code(code: int | Code, message: str, **context: Any) -> ServingError:
    """Build the :class:`ServingError` subclass for a canonical ``code``.

    >>> error_for_code(5, "Servable not found for request: Latest(half)").http_status
    404
    """
    try:
        cls = _BY_CODE[Code(int(code))]
    except (ValueError, KeyError):
        cls = UnknownError
    return cls(message, **context)


# Several codes share one HTTP status; pick the one a TF Serving REST error most likely means.
_CODE_FOR_HTTP: dict[int, Code] = {
    400: Code.INVALID_ARGUMENT,
    401: Code.UNAUTHENTICATED,
    403: Code.PERMISSION_DENIED,
    404: Code.NOT_FOUND,
    409: Code.ABORTED,
    429: Code.RESOURCE_EXHAUSTED,
    499: Code.CANCELLED,
    500: Code.INTERNAL,
    501: Code.UNIMPLEMENTED,
    503: Code.UNAVAILABLE,
    504: Code.DEADLINE_EXCEEDED,
}


def code_for_http_status(status: int) -> Code:
    """The canonical code a REST error status stands for (inverse of :data:`HTTP_STATUS`)."""
    if status in _CODE_FOR_HTTP:
        return _CODE_FOR_HTTP[status]
    return Code.INTERNAL if status >= 500 else Code.UNKNOWN
