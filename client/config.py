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

__all__ = ["ClientConfig", "FaultPolicy", "RetryPolicy", "TlsConfig"]


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
class FaultPolicy:
    """What a client over several replicas does about one that hangs or answers slowly.

    The defaults help without configuration and bound the extra load:

    * **Attempt timeout.** An attempt gets ``attempt_timeout`` seconds (None: adaptive,
      ``attempt_timeout_p99_factor`` x the p99 of the model's recent answers, at least
      ``min_attempt_timeout``) before the call, which is idempotent (Predict, Classify, Regress,
      metadata, status), is retried on another replica within the call's deadline. An attempt
      is cut short only while the retry budget could pay for its retry, and only one attempt per
      call (when the retry is slow too, the request is slow, not the replica); otherwise it gets
      the whole deadline, so a call never fails early for want of budget.
    * **Ejection.** A replica whose attempt timed out, that refused a connection, or whose
      latency (EWMA) is ``slow_factor`` x the others' median is skipped for ``ejection_seconds``
      (doubling while it keeps failing, up to ``max_ejection_seconds``); then one call probes it
      and its answer brings it back. At most ``max_ejected_fraction`` of the replicas (at least
      one) are ejected at a time for slowness or timeouts.
    * **Hedging** (off by default): after ``hedge_delay`` (None: the p95 of recent answers) a
      second attempt goes to another replica; the first answer wins, the other is cancelled.
    * **Budget.** Timeout retries and hedges draw on one budget: ``budget_ratio`` of the calls
      (0.1: at most 10% extra attempts) plus ``budget_min_per_second`` so a quiet client can
      still retry.
    * **Keepalive** (gRPC): an HTTP/2 ping after ``keepalive_seconds`` without activity on a
      connection with calls in flight; no answer within ``keepalive_timeout_seconds`` closes
      it, so a frozen peer's connection is declared dead within seconds.

    Everything counts in :meth:`tfship.client.Client.fault_stats` and per replica in
    ``client.replicas()[i].health``. ``FaultPolicy(enabled=False)`` restores plain round robin.
    """

    enabled: bool = True
    attempt_timeout: float | None = None
    min_attempt_timeout: float = 0.1
    attempt_timeout_p99_factor: float = 4.0
    hedge: bool = False
    hedge_delay: float | None = None
    min_hedge_delay: float = 0.005
    budget_ratio: float = 0.1
    budget_min_per_second: float = 2.0
    slow_factor: float = 5.0
    ejection_seconds: float = 0.5
    max_ejection_seconds: float = 2.0
    max_ejected_fraction: float = 0.5
    keepalive_seconds: float = 5.0
    keepalive_timeout_seconds: float = 2.0


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
    reconnect_backoff_max: float = 2.0
    #: Record the calls this client makes (sampled, bounded, off the call path) as PredictionLog
    #: capture files, the format tfship-model-server's logging_config writes (tfship.client.capture).
    capture: CaptureConfig | None = None
    #: ``v2+http://`` only: send tensors and ask for answers as binary data (the binary tensor data
    #: extension) instead of JSON lists. Several times faster for large numeric tensors; turn it
    #: off for a V2 server without the extension.
    v2_binary_data: bool = True
    #: Attempt timeouts, ejection, hedging and their budget over several replicas.
    faults: FaultPolicy = field(default_factory=FaultPolicy)
