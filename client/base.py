"""The transport-independent client: one interface over gRPC and REST.

Transports (:mod:`tfship.client.grpc_transport`, :mod:`tfship.client.rest_transport`) implement
the five raw calls; this class adds input normalisation, retries for transient failures, error
hints, metadata caching, ``wait_until_available`` and batch prediction.

:class:`BaseClient` holds every step of a call that does no I/O (naming inputs, the retry
schedule, error hints, the metadata cache, reading a model's status), so the blocking
:class:`Client` and the asyncio :class:`tfship.client.aio.AsyncClient` differ only in how they
wait (the httpx model: one set of request semantics, a sync and an async driver).
"""

from __future__ import annotations

import abc
import concurrent.futures
import contextvars
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from tfship.client.config import ClientConfig
from tfship.client.endpoints import Endpoint, ReplicaHealth, RoundRobin, Target
from tfship.client.resilience import Attempt, CallAttempts, Faults, FaultStats, attempt_to
from tfship.client.types import (
    ClassifyResult,
    Inputs,
    ModelMetadata,
    ModelRef,
    Outputs,
    Prediction,
    SignatureInfo,
    VersionStatus,
)

from tfship.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    ServingError,
    UnavailableError,
)
from tfship.wire import dtypes
from tfship.wire.tensor import as_ndarray

if TYPE_CHECKING:
    from tfship.client.capture import ClientCapture

__all__ = ["BaseClient", "Client", "ModelRef", "Inputs", "Outputs"]

T = TypeVar("T")

#: What errors of a config reload name as their model: a reload addresses every model at once.
CONFIG_REF = ModelRef("(model config)")


class BaseClient:
    """What the blocking and the asyncio clients share: config, metadata cache, and every step
    of a call that does no I/O. Subclasses only add how a call waits."""

    transport: str = ""

    def __init__(self, target: Target, config: ClientConfig) -> None:
        self.target = target
        self.url = target.url
        self.config = config
        self._metadata_cache: dict[tuple[str, int | None, str | None], tuple[float, ModelMetadata]] = {}
        self._lock = threading.Lock()
        self._faults = Faults(target, config.faults, config.retry.max_attempts)
        #: Set on the handles :meth:`replicas` returns: the fleet client's view of this replica.
        self._fleet_view: tuple[RoundRobin, Endpoint] | None = None
        self._capture: ClientCapture | None = None
        if config.capture is not None:
            from tfship.client.capture import ClientCapture

            self._capture = ClientCapture(config.capture)

    @property
    def capture(self) -> ClientCapture | None:
        """This client's capture (``ClientConfig.capture``), None when it captures nothing."""
        return self._capture

    def _close_capture(self) -> None:
        if self._capture is not None:
            self._capture.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"

    def _timeout(self, timeout: float | None) -> float | None:
        return self.config.timeout if timeout is None else timeout

    # ------------------------------------------------------------------ fault handling

    def fault_stats(self) -> FaultStats:
        """Calls, attempts, timeout retries, hedges, ejections and each replica's health: what
        this client did about slow, hung or gone replicas (see :class:`FaultPolicy`)."""
        return self._faults.stats()

    @property
    def health(self) -> ReplicaHealth | None:
        """On a handle from ``replicas()``: the fleet client's view of this replica (state
        healthy/ejected/probing, attempts, timeouts, ejections, latency EWMA); else None."""
        if self._fleet_view is None:
            return None
        pool, endpoint = self._fleet_view
        return pool.health_of(endpoint)

    def _replica_handle(self, handle: BaseClient, endpoint: Endpoint) -> None:
        if self._faults.pool is not None:
            handle._fleet_view = (self._faults.pool, endpoint)

    def _attempts(self, ref: ModelRef, timeout: float | None) -> CallAttempts:
        return self._faults.call(ref.name, self._deadline(timeout), self._retry_delay)

    # ------------------------------------------------------------------ metadata cache

    def _fresh_metadata(self, ref: ModelRef) -> ModelMetadata | None:
        """Cached metadata still to be trusted (an explicit version's never changes), else None."""
        with self._lock:
            cached = self._metadata_cache.get((ref.name, ref.version, ref.label))
        if cached is not None:
            stamp, meta = cached
            if ref.version is not None or time.monotonic() - stamp < self.config.metadata_ttl:
                return meta
        return None

    def _remember_metadata(self, ref: ModelRef, meta: ModelMetadata) -> None:
        with self._lock:
            self._metadata_cache[(ref.name, ref.version, ref.label)] = (time.monotonic(), meta)

    def _forget_metadata(self, ref: ModelRef) -> None:
        with self._lock:
            self._metadata_cache.pop((ref.name, ref.version, ref.label), None)

    @staticmethod
    def _signature_of(ref: ModelRef, meta: ModelMetadata) -> SignatureInfo:
        sig = meta.signature(ref.signature)
        if sig is None:
            raise FailedPreconditionError(
                f'Serving signature key "{ref.signature or "serving_default"}" not found.',
                model=ref.name, hint=BaseClient._signatures_hint(ref, meta))
        return sig

    # ------------------------------------------------------------------ inputs

    @staticmethod
    def _needs_signature(inputs: Inputs) -> bool:
        """Whether naming ``inputs`` needs the signature (a bare array, or lists without a dtype)."""
        if not isinstance(inputs, Mapping):
            return True
        return not all(isinstance(v, np.ndarray) for v in inputs.values())

    @staticmethod
    def _name_inputs(ref: ModelRef, inputs: Inputs, sig: SignatureInfo | None) -> dict[str, np.ndarray]:
        """``{name: ndarray}``; bare arrays get the signature's only input name, lists its dtype.

        ``sig`` may be None only when :meth:`_needs_signature` says so.
        """
        if isinstance(inputs, Mapping):
            items = dict(inputs)
        else:
            assert sig is not None
            names = list(sig.inputs)
            if len(names) != 1:
                raise InvalidArgumentError(
                    f"{ref.describe()} takes {len(names)} inputs; pass a dict with keys "
                    f"{sorted(names)}.", model=ref.name,
                    hint=f"Expected inputs: {sig.describe_inputs()}")
            items = {names[0]: inputs}
        out: dict[str, np.ndarray] = {}
        for name, value in items.items():
            if isinstance(value, np.ndarray):
                out[name] = as_ndarray(value)
                continue
            # Python lists/scalars carry no dtype: use the signature's, as the REST API does.
            assert sig is not None
            spec = sig.inputs.get(name)
            out[name] = as_ndarray(value, dtypes.by_name(spec.dtype) if spec else None)
        return out

    # ------------------------------------------------------------------ retries and hints

    @staticmethod
    def _deadline(timeout: float | None) -> float | None:
        return None if timeout is None else time.monotonic() + timeout

    @staticmethod
    def _left(deadline: float | None) -> float | None:
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    def _retry_delay(self, exc: ServingError, attempt: int, deadline: float | None) -> float | None:
        """Seconds to wait before retrying after failed attempt ``attempt``, or None to give up
        (then the error gets the attempt count and, for UNAVAILABLE, a hint).

        Retries (UNAVAILABLE only: the request never ran) stay within the RetryPolicy's attempts
        and the call's deadline: no retry starts after its backoff would cross the deadline.
        Over several replicas the retry lands on another one (round robin skips a replica that
        just failed).
        """
        if not isinstance(exc, UnavailableError):
            return None
        pause = self.config.retry.backoff(attempt)
        in_time = deadline is None or time.monotonic() + pause < deadline
        if attempt < max(1, self.config.retry.max_attempts) and in_time:
            return pause
        exc.details = {"attempts": attempt}
        if exc.hint is None:
            why = "" if in_time else " (the call's deadline left no time for another)"
            exc.hint = (f"Gave up after {attempt} attempt(s){why} to {self.url}: is the server "
                        "running and listening on that port?")
            exc.args = (f"{exc.message}\n{exc.hint}",)
        return None

    def _hint_needs(self, exc: ServingError, sent: Mapping[str, np.ndarray] | None,
                    explain: bool) -> str | None:
        """Which server state explains ``exc``: "versions", "signatures", "inputs" or None."""
        if not (explain and self.config.explain_errors and exc.hint is None):
            return None
        if isinstance(exc, NotFoundError) or (
                isinstance(exc, InvalidArgumentError) and "label" in exc.message.lower()):
            return "versions"
        if isinstance(exc, FailedPreconditionError) and "signature" in exc.message.lower():
            return "signatures"
        if isinstance(exc, InvalidArgumentError) and sent is not None:
            return "inputs"
        return None

    def _versions_hint(self, ref: ModelRef, versions: list[VersionStatus] | None) -> str:
        """``versions``: the model's status, None when the server has no such model."""
        if versions is None:
            return (f"The server at {self.url} has no model named {ref.name!r}: check the name "
                    "(--model_name or the model config file).")
        listed = ", ".join(str(v) for v in versions) or "none"
        text = f"Model {ref.name!r} has versions: {listed}."
        if ref.label:
            text += (" Version labels are defined in the server's model config (version_labels) "
                     "and can only point at AVAILABLE versions.")
        return text

    @staticmethod
    def _metadata_ref(ref: ModelRef) -> ModelRef:
        """The metadata a signatures or inputs hint reads: fetched fresh (a hot swap may have
        changed it), and signature-independent, so both hints share one cache entry."""
        return ModelRef(ref.name, ref.version, ref.label)

    @classmethod
    def _metadata_hint(cls, ref: ModelRef, needs: str, meta: ModelMetadata,
                       sent: Mapping[str, np.ndarray] | None) -> str | None:
        """The "signatures" or "inputs" hint from freshly read metadata."""
        if needs == "signatures":
            return cls._signatures_hint(ref, meta)
        if needs == "inputs" and sent is not None:
            return cls._inputs_hint(ref, meta, sent)
        return None

    @staticmethod
    def _signatures_hint(ref: ModelRef, meta: ModelMetadata) -> str:
        names = sorted(n for n in meta.signatures if not n.startswith("__"))
        return f"{ref.describe()} has signatures: {', '.join(names) or 'none'}."

    @staticmethod
    def _inputs_hint(ref: ModelRef, meta: ModelMetadata, sent: Mapping[str, np.ndarray]) -> str | None:
        sig = meta.signature(ref.signature)
        if sig is None:
            return None
        got = ", ".join(f"{k}: {v.dtype} {list(v.shape)}" for k, v in sorted(sent.items()))
        return (f"Signature {ref.signature or 'serving_default'!r} of {ref.describe()} "
                f"expects inputs: {sig.describe_inputs()}; you sent: {got}.")

    @staticmethod
    def _add_hint(exc: ServingError, ref: ModelRef, hint: str | None) -> None:
        if hint:
            exc.hint = hint
            exc.model = exc.model or ref.name
            exc.args = (f"{exc.message}\n{hint}",)

    # ------------------------------------------------------------------ waiting for a model

    def _availability_wait(self, model: str, version: int | None, timeout: float,
                           poll_interval: float) -> AvailabilityWait:
        return AvailabilityWait(self.url, model, version, timeout, poll_interval)


class AvailabilityWait:
    """``wait_until_available`` between two GetModelStatus polls (no I/O): what the last answer
    means, when to give up, how long to pause."""

    def __init__(self, url: str, model: str, version: int | None, timeout: float, poll_interval: float) -> None:
        self.url, self.model, self.version, self.timeout = url, model, version, timeout
        self.ref = ModelRef(model, version)
        self.rpc_timeout = min(5.0, timeout)
        self._deadline = time.monotonic() + timeout
        self._pause = poll_interval
        self._last = "no answer yet"

    def seen(self, answer: list[VersionStatus] | ServingError) -> int | None:
        """The AVAILABLE version to return, or None to poll again; raises the version's load
        error once it ended in error, and UnavailableError after the timeout."""
        versions = [] if isinstance(answer, ServingError) else answer
        if isinstance(answer, ServingError):
            self._last = answer.message
        for v in versions:
            if v.available and (self.version is None or v.version == self.version):
                return v.version
            if self.version is not None and v.version == self.version and v.state == "END" and v.error_code:
                from tfship.errors import error_for_code

                raise error_for_code(v.error_code, v.error_message, model=self.model, version=self.version,
                                     hint=f"Version {self.version} of {self.model!r} failed to load.")
        if versions:
            self._last = "versions: " + ", ".join(str(v) for v in versions)
        if time.monotonic() >= self._deadline:
            what = f"version {self.version} of " if self.version is not None else ""
            raise UnavailableError(
                f"Timed out after {self.timeout:g} s waiting for {what}model {self.model!r} to become "
                f"AVAILABLE on {self.url} (last seen: {self._last}).",
                model=self.model, version=self.version,
                hint="Check the server log; raise timeout= for large models.",
            )
        return None

    def pause(self) -> float:
        """Seconds to wait before the next poll (growing to 1 s)."""
        pause, self._pause = self._pause, min(self._pause * 1.5, 1.0)
        return pause


class Client(BaseClient, abc.ABC):
    """A connection to a TF Serving compatible server. Use :func:`tfship.client.connect`.

    Thread-safe: one client may serve many threads (``predict_batches`` relies on it).
    """

    def __init__(self, target: Target, config: ClientConfig) -> None:
        super().__init__(target, config)
        self._replica_clients: dict[Endpoint, Client] = {}
        self._attempt_pool: concurrent.futures.ThreadPoolExecutor | None = None  # hedged attempts

    # ------------------------------------------------------------------ transport hooks

    @abc.abstractmethod
    def _predict(self, ref: ModelRef, inputs: dict[str, np.ndarray], output_filter: Sequence[str],
                 timeout: float | None) -> tuple[dict[str, np.ndarray], int | None]:
        """Outputs by name, and the version that answered when the transport says (gRPC does)."""

    @abc.abstractmethod
    def _classify(self, ref: ModelRef, examples: Sequence[Any], context: Any,
                  timeout: float | None) -> ClassifyResult: ...

    @abc.abstractmethod
    def _regress(self, ref: ModelRef, examples: Sequence[Any], context: Any,
                 timeout: float | None) -> np.ndarray: ...

    @abc.abstractmethod
    def _metadata(self, ref: ModelRef, timeout: float | None) -> ModelMetadata: ...

    @abc.abstractmethod
    def _status(self, ref: ModelRef, timeout: float | None) -> list[VersionStatus]: ...

    @abc.abstractmethod
    def _reload_config(self, config: str, timeout: float | None) -> None: ...

    @abc.abstractmethod
    def close(self) -> None:
        """Close channels / connection pools (and replica handles). The client cannot be used afterwards."""

    # ------------------------------------------------------------------ replicas

    def replicas(self) -> list[Client]:
        """One client per replica this client balances over, in endpoint order.

        For ``grpc://a:8500,b:8500`` the two listed servers; for ``dns:///NAME:8500`` one per
        address the name resolves to *now* (asked again on each call, so scaled-up replicas
        appear). A single-server client returns ``[self]``. The handles belong to this client:
        it closes them; do not close them yourself. Each handle's ``.url`` names its replica.
        """
        if not self.target.several:
            return [self]
        endpoints = self.target.resolve()
        with self._lock:
            handles = []
            for endpoint in endpoints:
                handle = self._replica_clients.get(endpoint)
                if handle is None:
                    handle = self._replica_clients[endpoint] = type(self)(
                        Target(endpoint.url, endpoint.scheme, (endpoint,), protocol=endpoint.protocol), self.config)
                    self._replica_handle(handle, endpoint)
                handles.append(handle)
        return handles

    def _close_replicas(self) -> None:
        self._close_capture()  # every transport's close() comes through here
        self._close_attempt_threads()
        with self._lock:
            handles, self._replica_clients = list(self._replica_clients.values()), {}
        for handle in handles:
            handle.close()

    # ------------------------------------------------------------------ public API

    def predict(self, model: str, inputs: Inputs, *, version: int | None = None,
                label: str | None = None, signature: str | None = None,
                timeout: float | None = None, output_filter: Sequence[str] = ()) -> Outputs:
        """Run the model's signature on ``inputs``; numpy in, numpy out.

        ``inputs`` is an array (or nested list) for a single-input signature, or a dict
        ``{input_name: array}``. Returns one array when the signature has one output (or one
        output was asked for), else a dict ``{output_name: array}``.

        >>> client.predict("half_plus_two", np.array([1.0, 2.0], np.float32))  # doctest: +SKIP
        array([2.5, 3. ], dtype=float32)
        """
        outputs = self.predict_detailed(model, inputs, version=version, label=label, signature=signature,
                                        timeout=timeout, output_filter=output_filter).outputs
        return next(iter(outputs.values())) if len(outputs) == 1 else outputs

    def predict_detailed(self, model: str, inputs: Inputs, *, version: int | None = None,
                         label: str | None = None, signature: str | None = None,
                         timeout: float | None = None, output_filter: Sequence[str] = ()) -> Prediction:
        """Like :meth:`predict`, but returns a :class:`Prediction`: every output by name, and the
        version that answered (``None`` over REST, whose responses do not say).

        During a hot swap this tells which version served each request.
        """
        ref = ModelRef(model, version, label, signature)
        named = self._named_inputs(ref, inputs)
        outputs, answered = self._call(ref, lambda left: self._predict(ref, named, tuple(output_filter), left),
                                       self._timeout(timeout), named)
        if self._capture is not None:
            self._capture.predict(model, answered if answered is not None else version, signature, named, outputs)
        return Prediction(outputs, answered)

    def classify(self, model: str, examples: Sequence[Mapping[str, Any] | bytes], *,
                 context: Mapping[str, Any] | None = None, version: int | None = None,
                 label: str | None = None, signature: str | None = None,
                 timeout: float | None = None) -> ClassifyResult:
        """Classify tf.Examples given as feature dicts (or serialized bytes over gRPC)."""
        ref = ModelRef(model, version, label, signature)
        result = self._call(ref, lambda left: self._classify(ref, list(examples), context, left),
                            self._timeout(timeout))
        if self._capture is not None:
            self._capture.examples("classify", model, version, signature, examples, context, result)
        return result

    def regress(self, model: str, examples: Sequence[Mapping[str, Any] | bytes], *,
                context: Mapping[str, Any] | None = None, version: int | None = None,
                label: str | None = None, signature: str | None = None,
                timeout: float | None = None) -> np.ndarray:
        """Regress tf.Examples; returns a float32 array with one value per example."""
        ref = ModelRef(model, version, label, signature)
        result = self._call(ref, lambda left: self._regress(ref, list(examples), context, left),
                            self._timeout(timeout))
        if self._capture is not None:
            self._capture.examples("regress", model, version, signature, examples, context, result)
        return result

    def metadata(self, model: str, *, version: int | None = None, label: str | None = None,
                 timeout: float | None = None) -> ModelMetadata:
        """The model's signatures (all SignatureDefs) and the version that answered."""
        ref = ModelRef(model, version, label)
        meta = self._call(ref, lambda left: self._metadata(ref, left), self._timeout(timeout))
        self._remember_metadata(ref, meta)
        return meta

    def status(self, model: str, *, version: int | None = None,
               timeout: float | None = None) -> list[VersionStatus]:
        """Every version the server knows for ``model`` (newest first), with its state."""
        ref = ModelRef(model, version)
        return self._call(ref, lambda left: self._status(ref, left), self._timeout(timeout), explain=False)

    def reload_config(self, config: str, *, timeout: float | None = None) -> None:
        """Replace the server's whole model config (ModelService/HandleReloadConfigRequest).

        ``config`` is a ``ModelServerConfig`` in text format, what ``--model_config_file`` holds.
        The server loads and unloads to match it and keeps its old config when it refuses the new
        one (the error is raised here). gRPC only: TF Serving's REST API has no reload, so a REST
        client raises :class:`~tfship.errors.UnimplementedError`.
        """
        self._call(CONFIG_REF, lambda left: self._reload_config(config, left), self._timeout(timeout),
                   explain=False)

    def wait_until_available(self, model: str, version: int | None = None, *,
                             timeout: float = 60.0, poll_interval: float = 0.1) -> int:
        """Block until ``version`` (or any version) of ``model`` is AVAILABLE; return that version.

        Polls GetModelStatus. Raises the version's load error as soon as the version ends in
        error, and :class:`DeadlineExceededError`-like :class:`UnavailableError` after ``timeout``.
        """
        wait = self._availability_wait(model, version, timeout, poll_interval)
        while True:
            try:
                answer: list[VersionStatus] | ServingError = self._status(wait.ref, wait.rpc_timeout)
            except (NotFoundError, UnavailableError) as exc:
                answer = exc
            found = wait.seen(answer)
            if found is not None:
                return found
            time.sleep(wait.pause())  # polling a remote state; the wait is bounded above

    def predict_batches(self, model: str, inputs: Inputs, *, batch_size: int = 256,
                        concurrency: int = 4, progress: Any = None, **kwargs: Any) -> Outputs:
        """Predict a large input in batches, ``concurrency`` requests in flight, order kept.

        See :func:`tfship.client.batching.predict_batches`.
        """
        from tfship.client.batching import predict_batches

        return predict_batches(self, model, inputs, batch_size=batch_size,
                               concurrency=concurrency, progress=progress, **kwargs)

    def batcher(self, model: str, *, version: int | None = None, label: str | None = None,
                signature: str | None = None, max_batch_size: int = 64, max_delay_ms: float = 2.0,
                max_concurrent_batches: int = 4) -> Any:
        """A :class:`tfship.client.batcher.Batcher`: concurrent ``batcher.predict(rows)`` calls
        from many threads for this model merge into one Predict request (up to ``max_batch_size``
        rows, waiting at most ``max_delay_ms`` for company), and each caller gets its own rows
        back, or its own error.

        >>> with client.batcher("digits", max_batch_size=64, max_delay_ms=2) as batcher:  # doctest: +SKIP
        ...     y = batcher.predict(x_row)     # called from many threads at once
        """
        from tfship.client.batcher import Batcher

        return Batcher(self, ModelRef(model, version, label, signature), max_batch_size=max_batch_size,
                       max_delay_ms=max_delay_ms, max_concurrent_batches=max_concurrent_batches)

    def signature_info(self, model: str, *, version: int | None = None, label: str | None = None,
                       signature: str | None = None) -> SignatureInfo:
        """The named (default: serving_default) signature, from cached metadata."""
        ref = ModelRef(model, version, label, signature)
        meta = self._cached_metadata(ref)
        if meta.signature(signature) is None:  # cached before a hot swap? ask the server once more
            self._forget_metadata(ref)
            meta = self._cached_metadata(ref)
        return self._signature_of(ref, meta)

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ helpers

    def _cached_metadata(self, ref: ModelRef) -> ModelMetadata:
        meta = self._fresh_metadata(ref)
        return meta if meta is not None else self.metadata(ref.name, version=ref.version, label=ref.label)

    def _named_inputs(self, ref: ModelRef, inputs: Inputs) -> dict[str, np.ndarray]:
        sig = (self.signature_info(ref.name, version=ref.version, label=ref.label, signature=ref.signature)
               if self._needs_signature(inputs) else None)
        return self._name_inputs(ref, inputs, sig)

    def _call(self, ref: ModelRef, fn: Callable[[float | None], T], timeout: float | None,
              sent: Mapping[str, np.ndarray] | None = None, *, explain: bool = True) -> T:
        """Run ``fn(seconds_left)`` as the attempts of one call (:mod:`tfship.client.resilience`:
        retries for transient failures and, over several replicas, attempt timeouts, retries on
        another replica and hedges); add hints to the final error."""
        attempts = self._attempts(ref, timeout)
        try:
            if self._faults.hedge_delay(attempts.key) is not None:
                return self._hedged(fn, attempts)
            while True:
                attempt = attempts.next()
                try:
                    with attempt_to(attempt.endpoint):
                        result = fn(attempt.timeout)
                except ServingError as exc:
                    delay = attempts.failed(attempt, exc)
                    if delay is None:
                        raise
                    if delay:
                        time.sleep(delay)  # backoff between retries, not a sync
                    continue
                attempts.succeeded(attempt)
                return result
        except ServingError as exc:
            needs = self._hint_needs(exc, sent, explain)
            if needs:
                self._explain(ref, exc, sent, needs)
            raise

    def _hedged(self, fn: Callable[[float | None], T], attempts: CallAttempts) -> T:
        """The attempts of one call with hedging: each runs on the client's attempt threads, a
        hedge starts after the hedge delay, the first answer wins. A blocking attempt cannot be
        interrupted, so the loser runs out on its thread (bounded by its timeout) and its answer
        is dropped."""
        running: dict[concurrent.futures.Future[T], Attempt] = {}

        def run(attempt: Attempt) -> T:
            with attempt_to(attempt.endpoint):
                return fn(attempt.timeout)

        def launch(attempt: Attempt) -> None:
            running[self._attempt_threads().submit(contextvars.copy_context().run, run, attempt)] = attempt

        launch(attempts.next())
        try:
            while running:
                wait = None if attempts.hedged else self._faults.hedge_delay(attempts.key)
                done, _ = concurrent.futures.wait(running, timeout=wait,
                                                  return_when=concurrent.futures.FIRST_COMPLETED)
                if not done:
                    hedge = attempts.hedge()
                    attempts.hedged = True
                    if hedge is not None:
                        launch(hedge)
                    continue
                for future in done:
                    attempt = running.pop(future)
                    exc = future.exception()
                    if exc is None:
                        attempts.succeeded(attempt)
                        return future.result()
                    if not isinstance(exc, ServingError):
                        raise exc
                    delay = attempts.failed(attempt, exc)
                    if delay is None:
                        if running:
                            continue  # the other attempt may still answer
                        raise exc
                    if delay:
                        time.sleep(delay)  # backoff between retries, not a sync
                    launch(attempts.next())  # even beside a running one: it may be hung too
            raise AssertionError("unreachable: a call ends with an answer or an error")
        finally:
            for future, attempt in running.items():
                future.cancel()
                attempts.cancelled(attempt)

    def _attempt_threads(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            pool = self._attempt_pool
            if pool is None:
                pool = self._attempt_pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=max(4, 2 * self.config.max_connections), thread_name_prefix="tfship-attempt")
            return pool

    def _close_attempt_threads(self) -> None:
        pool, self._attempt_pool = self._attempt_pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _explain(self, ref: ModelRef, exc: ServingError, sent: Mapping[str, np.ndarray] | None,
                 needs: str) -> None:
        hint: str | None = None
        try:
            if needs == "versions":
                hint = self._versions_hint(ref, self._model_versions(ref))
            else:
                about = self._metadata_ref(ref)
                self._forget_metadata(about)
                hint = self._metadata_hint(ref, needs, self._cached_metadata(about), sent)
        except ServingError:
            hint = None  # the hint is a courtesy; never let it hide the real error
        self._add_hint(exc, ref, hint)

    def _model_versions(self, ref: ModelRef) -> list[VersionStatus] | None:
        try:
            return self._status(ModelRef(ref.name), 5.0)
        except NotFoundError:
            return None
