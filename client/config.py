"""Explicit client configuration: timeouts, retries, message sizes, TLS.

>>> from tfship.client import connect, ClientConfig, RetryPolicy
>>> cfg = ClientConfig(timeout=5.0, retry=RetryPolicy(max_attempts=5))
>>> client = connect("grpc://127.0.0.1:8500", config=cfg)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tfship.capture import CaptureConfig

__all__ = ["ClientConfig", "RetryPolicy", "TlsConfig"]


@dataclass(frozen=True)
class RetryPolicy:
    """Retries with exponential backoff, for transient failures only.

    Only UNAVAILABLE (server down, restarting, connection refused or reset) is retried: it means
    the request never ran. Invalid input, NOT_FOUND and deadlines are never retried.
    ``max_attempts`` counts the first try (1 = no retry).
    """

    max_attempts: int = 4
    initial_backoff: float = 0.05
    max_backoff: float = 2.0
    multiplier: float = 2.0

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))


@dataclass(frozen=True)
class TlsConfig:
    """TLS for ``grpcs://`` / ``https://`` URLs (and ``grpc://`` when given explicitly).

    gRPC: ``root_certificates`` (PEM path; None = system roots), ``client_cert`` + ``client_key``
    for mutual TLS, ``server_name_override`` to match a certificate's name. HTTPS: ``verify``
    (False disables verification: tests only) and the same cert/key pair.
    """

    root_certificates: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    server_name_override: str | None = None
    verify: bool = True


@dataclass(frozen=True)
class ClientConfig:
    """Everything a client does not guess.

    ``timeout`` is the default per-request deadline in seconds (each call may override it);
    ``connect_timeout`` bounds connection set-up for REST. Message sizes are raised far above
    gRPC's 4 MB default, the classic failure of large batches (TF Serving itself accepts 2 GB).
    """

    timeout: float | None = 60.0
    connect_timeout: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_send_message_bytes: int = 2**31 - 1
    max_receive_message_bytes: int = 2**31 - 1
    tls: TlsConfig | None = None
    max_connections: int = 32
    #: Seconds a cached signature of the *latest* version (or a label) is trusted; a hot swap may
    #: change it. Metadata of an explicit version never changes and is kept.
    metadata_ttl: float = 10.0
    #: Add hints to errors (versions the model has, the inputs the signature expects) by asking
    #: the server; costs one extra request on the error path only.
    explain_errors: bool = True
    #: Over several replicas: the longest wait (seconds) before the gRPC channel tries a replica
    #: that went away again (grpcio's default is 120 s, far too long for a restarted replica).
    reconnect_backoff_max: float = 5.0
    #: Record the calls this client makes (sampled, bounded, off the call path) as PredictionLog
    #: capture files, the format tfship-model-server's logging_config writes (tfship.client.capture).
    capture: CaptureConfig | None = None
    #: ``v2+http://`` only: send tensors and ask for answers as binary data (the binary tensor data
    #: extension) instead of JSON lists. Several times faster for large numeric tensors; turn it
    #: off for a V2 server without the extension.
    v2_binary_data: bool = True
