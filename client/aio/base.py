"""The asyncio client: :class:`tfship.client.Client`'s API with ``await``.

Everything that does no I/O (naming inputs, the retry schedule, error hints, the metadata cache,
reading a model's status) is inherited from :class:`tfship.client.base.BaseClient`; this class
only awaits where the blocking client blocks. Cancelling a coroutine cancels its RPC or request.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
from tfship.client.base import CONFIG_REF, BaseClient, Inputs, ModelRef, Outputs
from tfship.client.config import ClientConfig
from tfship.client.endpoints import Endpoint, Target
from tfship.client.resilience import Attempt, CallAttempts, attempt_to
from tfship.client.types import ClassifyResult, ModelMetadata, Prediction, SignatureInfo, VersionStatus

from tfship.errors import NotFoundError, ServingError, UnavailableError

__all__ = ["AsyncClient"]

T = TypeVar("T")
A = TypeVar("A", bound="AsyncClient")


class AsyncClient(BaseClient, abc.ABC):
    """A connection to a TF Serving compatible server for asyncio code. Use :func:`tfship.client.aio.connect`.

    One client serves any number of concurrent coroutines of its event loop.
    """

    def __init__(self, target: Target, config: ClientConfig) -> None:
        super().__init__(target, config)
        self._replica_clients: dict[Endpoint, AsyncClient] = {}
        # One metadata request per model at a time: 200 coroutines starting together ask once.
        self._metadata_pending: dict[tuple[str, int | None, str | None], asyncio.Future[ModelMetadata]] = {}

    # ------------------------------------------------------------------ transport hooks

    @abc.abstractmethod
    async def _predict(self, ref: ModelRef, inputs: dict[str, np.ndarray], output_filter: Sequence[str],
                       timeout: float | None) -> tuple[dict[str, np.ndarray], int | None]:
        """Outputs by name, and the version that answered when the transport says (gRPC does)."""

    @abc.abstractmethod
    async def _classify(self, ref: ModelRef, examples: Sequence[Any], context: Any,
                        timeout: float | None) -> ClassifyResult: ...

    @abc.abstractmethod
    async def _regress(self, ref: ModelRef, examples: Sequence[Any], context: Any,
                       timeout: float | None) -> np.ndarray: ...

    @abc.abstractmethod
    async def _metadata(self, ref: ModelRef, timeout: float | None) -> ModelMetadata: ...

    @abc.abstractmethod
    async def _status(self, ref: ModelRef, timeout: float | None) -> list[VersionStatus]: ...

    @abc.abstractmethod
    async def _reload_config(self, config: str, timeout: float | None) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the channel / connection pool (and replica handles). The client cannot be used afterwards."""

    # ------------------------------------------------------------------ replicas

    def replicas(self) -> list[AsyncClient]:
        """One client per replica this client balances over; see :meth:`tfship.client.Client.replicas`."""
        if not self.target.several:
            return [self]
        handles = []
        for endpoint in self.target.resolve():
            handle = self._replica_clients.get(endpoint)
            if handle is None:
                handle = self._replica_clients[endpoint] = type(self)(
                    Target(endpoint.url, endpoint.scheme, (endpoint,), protocol=endpoint.protocol), self.config)
                self._replica_handle(handle, endpoint)
            handles.append(handle)
        return handles

    async def _close_replicas(self) -> None:
        self._close_capture()  # every transport's close() comes through here
        handles, self._replica_clients = list(self._replica_clients.values()), {}
        for handle in handles:
            await handle.close()

    # ------------------------------------------------------------------ public API

    async def predict(self, model: str, inputs: Inputs, *, version: int | None = None,
                      label: str | None = None, signature: str | None = None,
                      timeout: float | None = None, output_filter: Sequence[str] = ()) -> Outputs:
        """Run the model's signature on ``inputs``; see :meth:`tfship.client.Client.predict`."""
        outputs = (await self.predict_detailed(model, inputs, version=version, label=label, signature=signature,
                                               timeout=timeout, output_filter=output_filter)).outputs
        return next(iter(outputs.values())) if len(outputs) == 1 else outputs

    async def predict_detailed(self, model: str, inputs: Inputs, *, version: int | None = None,
                               label: str | None = None, signature: str | None = None,
                               timeout: float | None = None, output_filter: Sequence[str] = ()) -> Prediction:
        """Every output by name and the version that answered (None over REST)."""
        ref = ModelRef(model, version, label, signature)
        named = await self._named_inputs(ref, inputs)
        outputs, answered = await self._call(ref, lambda left: self._predict(ref, named, tuple(output_filter), left),
                                             self._timeout(timeout), named)
        if self._capture is not None:
            self._capture.predict(model, answered if answered is not None else version, signature, named, outputs)
        return Prediction(outputs, answered)

    async def classify(self, model: str, examples: Sequence[Mapping[str, Any] | bytes], *,
                       context: Mapping[str, Any] | None = None, version: int | None = None,
                       label: str | None = None, signature: str | None = None,
                       timeout: float | None = None) -> ClassifyResult:
        """Classify tf.Examples given as feature dicts (or serialized bytes over gRPC)."""
        ref = ModelRef(model, version, label, signature)
        result = await self._call(ref, lambda left: self._classify(ref, list(examples), context, left),
                                  self._timeout(timeout))
        if self._capture is not None:
            self._capture.examples("classify", model, version, signature, examples, context, result)
        return result

    async def regress(self, model: str, examples: Sequence[Mapping[str, Any] | bytes], *,
                      context: Mapping[str, Any] | None = None, version: int | None = None,
                      label: str | None = None, signature: str | None = None,
                      timeout: float | None = None) -> np.ndarray:
        """Regress tf.Examples; returns a float32 array with one value per example."""
        ref = ModelRef(model, version, label, signature)
        result = await self._call(ref, lambda left: self._regress(ref, list(examples), context, left),
                                  self._timeout(timeout))
        if self._capture is not None:
            self._capture.examples("regress", model, version, signature, examples, context, result)
        return result

    async def metadata(self, model: str, *, version: int | None = None, label: str | None = None,
                       timeout: float | None = None) -> ModelMetadata:
        """The model's signatures (all SignatureDefs) and the version that answered."""
        ref = ModelRef(model, version, label)
        meta = await self._call(ref, lambda left: self._metadata(ref, left), self._timeout(timeout))
        self._remember_metadata(ref, meta)
        return meta

    async def status(self, model: str, *, version: int | None = None,
                     timeout: float | None = None) -> list[VersionStatus]:
        """Every version the server knows for ``model`` (newest first), with its state."""
        ref = ModelRef(model, version)
        return await self._call(ref, lambda left: self._status(ref, left), self._timeout(timeout), explain=False)

    async def reload_config(self, config: str, *, timeout: float | None = None) -> None:
        """Replace the server's whole model config; see :meth:`tfship.client.Client.reload_config`."""
        await self._call(CONFIG_REF, lambda left: self._reload_config(config, left), self._timeout(timeout),
                         explain=False)

    async def wait_until_available(self, model: str, version: int | None = None, *,
                                   timeout: float = 60.0, poll_interval: float = 0.1) -> int:
        """Wait until ``version`` (or any version) of ``model`` is AVAILABLE; return that version.

        See :meth:`tfship.client.Client.wait_until_available`.
        """
        wait = self._availability_wait(model, version, timeout, poll_interval)
        while True:
            try:
                answer: list[VersionStatus] | ServingError = await self._status(wait.ref, wait.rpc_timeout)
            except (NotFoundError, UnavailableError) as exc:
                answer = exc
            found = wait.seen(answer)
            if found is not None:
                return found
            await asyncio.sleep(wait.pause())  # polling a remote state; the wait is bounded above

    async def predict_batches(self, model: str, inputs: Inputs, *, batch_size: int = 256,
                              concurrency: int = 4, progress: Any = None, **kwargs: Any) -> Outputs:
        """Predict a large input in batches, ``concurrency`` requests in flight, order kept.

        See :func:`tfship.client.batching.predict_batches`.
        """
        from tfship.client.batching import predict_batches_async

        return await predict_batches_async(self, model, inputs, batch_size=batch_size,
                                     concurrency=concurrency, progress=progress, **kwargs)

    def batcher(self, model: str, *, version: int | None = None, label: str | None = None,
                signature: str | None = None, max_batch_size: int = 64, max_delay_ms: float = 2.0,
                max_concurrent_batches: int = 4) -> Any:
        """An :class:`tfship.client.batcher.AsyncBatcher`: concurrent ``await batcher.predict(rows)``
        calls for this model merge into one request; see :meth:`tfship.client.Client.batcher`."""
        from tfship.client.batcher import AsyncBatcher

        return AsyncBatcher(self, ModelRef(model, version, label, signature), max_batch_size=max_batch_size,
                            max_delay_ms=max_delay_ms, max_concurrent_batches=max_concurrent_batches)

    async def signature_info(self, model: str, *, version: int | None = None, label: str | None = None,
                             signature: str | None = None) -> SignatureInfo:
        """The named (default: serving_default) signature, from cached metadata."""
        ref = ModelRef(model, version, label, signature)
        meta = await self._cached_metadata(ref)
        if meta.signature(signature) is None:  # cached before a hot swap? ask the server once more
            self._forget_metadata(ref)
            meta = await self._cached_metadata(ref)
        return self._signature_of(ref, meta)

    async def __aenter__(self: A) -> A:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ helpers

    async def _cached_metadata(self, ref: ModelRef) -> ModelMetadata:
        meta = self._fresh_metadata(ref)
        if meta is not None:
            return meta
        key = (ref.name, ref.version, ref.label)
        task = self._metadata_pending.get(key)
        if task is None:
            # A task of its own, so a cancelled caller does not cancel the others' answer.
            task = asyncio.ensure_future(self.metadata(ref.name, version=ref.version, label=ref.label))
            self._metadata_pending[key] = task

            def done(t: asyncio.Future[ModelMetadata]) -> None:
                self._metadata_pending.pop(key, None)
                if not t.cancelled():
                    t.exception()  # retrieved here: no "never retrieved" warning when every caller left

            task.add_done_callback(done)
        return await asyncio.shield(task)

    async def _named_inputs(self, ref: ModelRef, inputs: Inputs) -> dict[str, np.ndarray]:
        sig = (await self.signature_info(ref.name, version=ref.version, label=ref.label, signature=ref.signature)
               if self._needs_signature(inputs) else None)
        return self._name_inputs(ref, inputs, sig)

    async def _call(self, ref: ModelRef, fn: Callable[[float | None], Awaitable[T]], timeout: float | None,
                    sent: Mapping[str, np.ndarray] | None = None, *, explain: bool = True) -> T:
        """Await ``fn(seconds_left)`` as the attempts of one call (see
        :meth:`tfship.client.Client._call`); add hints to the final error."""
        attempts = self._attempts(ref, timeout)
        try:
            if self._faults.hedge_delay(attempts.key) is not None:
                return await self._hedged(fn, attempts)
            while True:
                attempt = attempts.next()
                try:
                    with attempt_to(attempt.endpoint):
                        result = await fn(attempt.timeout)
                except ServingError as exc:
                    delay = attempts.failed(attempt, exc)
                    if delay is None:
                        raise
                    if delay:
                        await asyncio.sleep(delay)  # backoff between retries, not a sync
                    continue
                attempts.succeeded(attempt)
                return result
        except ServingError as exc:
            needs = self._hint_needs(exc, sent, explain)
            if needs:
                await self._explain(ref, exc, sent, needs)
            raise

    async def _hedged(self, fn: Callable[[float | None], Awaitable[T]], attempts: CallAttempts) -> T:
        """The attempts of one call with hedging: a hedge task starts after the hedge delay, the
        first answer wins and the other attempt is cancelled (which cancels its RPC/request)."""
        running: dict[asyncio.Future[T], Attempt] = {}

        async def run(attempt: Attempt) -> T:
            with attempt_to(attempt.endpoint):
                return await fn(attempt.timeout)

        def launch(attempt: Attempt) -> None:
            running[asyncio.ensure_future(run(attempt))] = attempt

        launch(attempts.next())
        try:
            while running:
                wait = None if attempts.hedged else self._faults.hedge_delay(attempts.key)
                done, _ = await asyncio.wait(running, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    hedge = attempts.hedge()
                    attempts.hedged = True
                    if hedge is not None:
                        launch(hedge)
                    continue
                for task in done:
                    attempt = running.pop(task)
                    exc = task.exception()
                    if exc is None:
                        attempts.succeeded(attempt)
                        return task.result()
                    if not isinstance(exc, ServingError):
                        raise exc
                    delay = attempts.failed(attempt, exc)
                    if delay is None:
                        if running:
                            continue  # the other attempt may still answer
                        raise exc
                    if delay:
                        await asyncio.sleep(delay)  # backoff between retries, not a sync
                    launch(attempts.next())  # even beside a running one: it may be hung too
            raise AssertionError("unreachable: a call ends with an answer or an error")
        finally:
            for task, attempt in running.items():
                task.cancel()
                attempts.cancelled(attempt)

    async def _explain(self, ref: ModelRef, exc: ServingError, sent: Mapping[str, np.ndarray] | None,
                       needs: str) -> None:
        hint: str | None = None
        try:
            if needs == "versions":
                hint = self._versions_hint(ref, await self._model_versions(ref))
            else:
                about = self._metadata_ref(ref)
                self._forget_metadata(about)
                hint = self._metadata_hint(ref, needs, await self._cached_metadata(about), sent)
        except ServingError:
            hint = None  # the hint is a courtesy; never let it hide the real error
        self._add_hint(exc, ref, hint)

    async def _model_versions(self, ref: ModelRef) -> list[VersionStatus] | None:
        try:
            return await self._status(ModelRef(ref.name), 5.0)
        except NotFoundError:
            return None
