"""DataPlane: every TF Serving API once, under the gRPC and REST front ends (see package docs)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from tfship.errors import InvalidArgumentError, ServingError, UnknownError

from ..core.manager import Handle, VersionStatus
from ..core.method_check import check_method_name
from ..core.server_core import ServerCore
from ..event_loop import ServingLoop
from .types import (
    DEFAULT_SIGNATURE,
    InferenceRecord,
    InferenceTask,
    ModelMetadata,
    ModelRef,
    Observer,
    RoutingPolicy,
    Served,
    highest_version,
)

__all__ = ["DataPlane"]

log = logging.getLogger("tfship.serving")

T = TypeVar("T")

#: inputs given as ``decode(signature_defs) -> value``: decoded after the version is acquired and
#: the method checked, so a request's errors come in TF Serving's order (NOT_FOUND before a bad tensor)
Decode = Callable[[Mapping[str, Any]], T]

_METADATA_FIELD = "signature_def"


class DataPlane:
    """Model status, metadata, predict, classify, regress and multi-inference for one ServerCore.

    The model calls are coroutines for the serving loop: predict awaits the batcher, one hop to
    the loop's executor, or runs on the loop (a short run, the loop otherwise quiet; see
    runtime/servable.py); classify / regress / multi_inference run (decode + model) in one
    executor hop. Status and metadata are cheap and answered where called.
    """

    def __init__(
        self, core: ServerCore, serving_loop: ServingLoop, *, routing: RoutingPolicy = highest_version
    ) -> None:
        self.core = core
        self.loop = serving_loop
        self.metrics = core.metrics
        self.method_name_check = core.options.enable_signature_method_name_check
        #: the routing hook: which version serves an unpinned predict/classify/regress/multi_inference
        self.routing: RoutingPolicy = routing
        self._observers: tuple[Observer, ...] = ()
        self._observers_lock = threading.Lock()
        #: exceptions raised by observers (logged, never raised to a request)
        self.observer_failures = 0

    # ------------------------------------------------------------------ hooks

    def add_observer(self, observer: Observer) -> Callable[[], None]:
        """Call ``observer(record)`` after every served model call; returns its remover."""
        with self._observers_lock:
            self._observers = (*self._observers, observer)

        def remove() -> None:
            with self._observers_lock:
                self._observers = tuple(o for o in self._observers if o is not observer)

        return remove

    # ------------------------------------------------------------------ status / metadata

    def model_status(self, ref: ModelRef, *, entrypoint: str = "") -> list[VersionStatus]:
        """Every version of ``ref.name`` (highest first), or ``ref.version`` only; labels ignored."""
        with _Call(self, "get_model_status", ref, entrypoint):
            _check_name(ref)
            return self.core.manager.status(ref.name, ref.version)

    def model_metadata(
        self, ref: ModelRef, fields: Sequence[str] | None = None, *, entrypoint: str = ""
    ) -> ModelMetadata:
        """The SignatureDefs of the version ``ref`` names (unpinned: the highest, never routed).

        ``fields`` (GetModelMetadata's metadata_field) must be ``["signature_def"]``; ``None``
        asks for everything (REST).
        """
        with _Call(self, "get_model_metadata", ref, entrypoint) as call, self._acquire(ref, route=False) as h:
            call.version = h.version
            if fields is not None:
                if len(fields) == 0:
                    raise InvalidArgumentError(
                        "GetModelMetadataRequest must specify at least one metadata_field")
                for f in fields:
                    if f != _METADATA_FIELD:
                        raise InvalidArgumentError(f"Metadata field {f} is not supported")
            return ModelMetadata(ref.name, h.version, h.servable.signature_defs)

    # ------------------------------------------------------------------ model calls

    async def predict(
        self,
        ref: ModelRef,
        signature_name: str,
        inputs: Mapping[str, np.ndarray] | Decode[Mapping[str, np.ndarray]],
        output_filter: Sequence[str] = (),
        timeout: float | None = None,
        *,
        entrypoint: str = "",
        decode_off_loop: bool = False,
        encode: Callable[[dict[str, np.ndarray]], Any] | None = None,
    ) -> Served[Any]:
        """Run ``signature_name`` ("" = serving_default) on ``inputs``: ``{alias: array}``.

        ``inputs`` may be ``decode(signature_defs)``, called once the version is held. The result's
        value is ``{alias: array}``, or ``encode(that)`` when ``encode`` is given. With
        ``decode_off_loop`` (megabytes of JSON) decode and encode run on the executor: in the same
        hop as the model run when the servable does not batch (one round trip, not three).
        """
        with _Call(self, "predict", ref, entrypoint, signature_name) as call, self._acquire(ref) as h:
            call.version = h.version
            self._check_method(h, signature_name, "predict")
            servable = h.servable
            if decode_off_loop and not servable.batching:
                def blocking() -> Any:
                    call.inputs = inputs(servable.signature_defs) if callable(inputs) else inputs
                    call.outputs = servable.predict(signature_name, call.inputs, list(output_filter), timeout)
                    return call.outputs if encode is None else encode(call.outputs)

                value = await self.loop.run_blocking(blocking)
                return Served(ref.name, h.version, signature_name or DEFAULT_SIGNATURE, value)
            if callable(inputs):
                decode = inputs
                inputs = (await self.loop.run_blocking(decode, servable.signature_defs) if decode_off_loop
                          else decode(servable.signature_defs))
            call.inputs = inputs
            outputs = await servable.predict_async(
                signature_name, inputs, list(output_filter), timeout, self.loop)
            call.outputs = outputs
            if encode is not None:
                value = await self.loop.run_blocking(encode, outputs) if decode_off_loop else encode(outputs)
            else:
                value = outputs
            return Served(ref.name, h.version, signature_name or DEFAULT_SIGNATURE, value)

    async def classify(
        self, ref: ModelRef, signature_name: str, examples: Sequence[bytes] | Decode[Sequence[bytes]],
        timeout: float | None = None, *, entrypoint: str = "",
    ) -> Served[Any]:
        """Classify serialized tf.Examples: a ``runtime.Classification`` ([batch, n] classes/scores)."""
        return await self._examples("classify", ref, signature_name, examples, timeout, entrypoint)

    async def regress(
        self, ref: ModelRef, signature_name: str, examples: Sequence[bytes] | Decode[Sequence[bytes]],
        timeout: float | None = None, *, entrypoint: str = "",
    ) -> Served[np.ndarray]:
        """Regress serialized tf.Examples: one float32 per example, shape [batch]."""
        return await self._examples("regress", ref, signature_name, examples, timeout, entrypoint)

    async def _examples(
        self, api: str, ref: ModelRef, signature_name: str, examples: Any, timeout: float | None,
        entrypoint: str,
    ) -> Served[Any]:
        with _Call(self, api, ref, entrypoint, signature_name) as call, self._acquire(ref) as h:
            call.version = h.version
            self._check_method(h, signature_name, api)
            run = h.servable.classify if api == "classify" else h.servable.regress

            def blocking() -> Any:
                call.inputs = examples(h.servable.signature_defs) if callable(examples) else examples
                return run(signature_name, call.inputs, timeout)

            call.outputs = await self.loop.run_blocking(blocking)
            return Served(ref.name, h.version, signature_name or DEFAULT_SIGNATURE, call.outputs)

    async def multi_inference(
        self, tasks: Sequence[InferenceTask], examples: Sequence[bytes] | Decode[Sequence[bytes]],
        timeout: float | None = None, *, entrypoint: str = "",
    ) -> Served[list[Any]]:
        """Several classify/regress signatures of one model on the same examples, in one run.

        Results (``Classification`` or float32 array) in task order; ``signature_name`` of the
        result joins the tasks' names with ``,``.
        """
        ref = tasks[0].ref if tasks else ModelRef("")
        names = ",".join(t.signature_name for t in tasks)
        with _Call(self, "multi_inference", ref, entrypoint, names) as call:
            if not tasks:
                raise InvalidArgumentError("Tasks is empty.")
            _check_name(ref)
            for task in tasks:
                if not task.ref.name:
                    raise InvalidArgumentError("Found ModelSpec with an empty model name.")
                if task.ref.name != ref.name:
                    raise InvalidArgumentError(
                        "All ModelSpecs in a MultiInferenceRequest must access the same model name.")
            with self._acquire(ref) as h:
                call.version = h.version

                def blocking() -> list[Any]:
                    call.inputs = examples(h.servable.signature_defs) if callable(examples) else examples
                    return h.servable.multi_inference(
                        [(t.signature_name, t.method_name) for t in tasks], call.inputs, timeout)

                call.outputs = await self.loop.run_blocking(blocking)
                return Served(ref.name, h.version, names, call.outputs)

    def reject(self, api: str, ref: ModelRef, exc: Exception, *, entrypoint: str = "") -> ServingError:
        """A request its front end could not decode (it never reached a method above): recorded
        like any failure (metrics, observers), returned as the ServingError to answer with."""
        try:
            with _Call(self, api, ref, entrypoint):
                raise exc
        except ServingError as error:
            return error
        raise AssertionError("unreachable")  # _Call turns every Exception into a ServingError

    # ------------------------------------------------------------------ internals

    def _acquire(self, ref: ModelRef, route: bool = True) -> Handle:
        _check_name(ref)
        if ref.pinned or not route or self.routing is highest_version:
            # TF Serving's rule stays the manager's own (no tuple of versions per request)
            return self.core.manager.acquire(ref.name, ref.version, ref.label)
        return self.core.manager.acquire(ref.name, choose=self.routing)

    def _check_method(self, h: Handle, signature_name: str, api: str) -> None:
        if self.method_name_check:
            check_method_name(h.servable, signature_name, api)

    def _notify(self, record: InferenceRecord) -> None:
        for observer in self._observers:
            try:
                observer(record)
            except Exception:  # noqa: BLE001 - an observer never fails the request it watches
                self.observer_failures += 1
                log.exception("data plane observer %r failed", observer)


def _check_name(ref: ModelRef) -> None:
    if not ref.name:
        raise InvalidArgumentError("ModelSpec has no name specified.")


_OBSERVED = frozenset({"predict", "classify", "regress", "multi_inference"})


class _Call:
    """One API call: maps failures to ServingErrors, records metrics, tells the observers."""

    __slots__ = ("plane", "api", "ref", "entrypoint", "signature_name", "version", "inputs", "outputs",
                 "start")

    def __init__(self, plane: DataPlane, api: str, ref: ModelRef, entrypoint: str,
                 signature_name: str = "") -> None:
        self.plane, self.api, self.ref, self.entrypoint = plane, api, ref, entrypoint
        self.signature_name = signature_name
        self.version: int | None = None
        self.inputs: Any = None
        self.outputs: Any = None

    def __enter__(self) -> _Call:
        self.start = time.perf_counter()
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        seconds = time.perf_counter() - self.start
        error: ServingError | None = None
        if exc is not None:
            if isinstance(exc, ServingError):
                error = exc
            elif isinstance(exc, Exception):
                # a server bug (client mistakes are ServingErrors, raised by the decode layers;
                # tests/serving/test_fuzz.py checks none lands here): logged with its traceback,
                # the client gets a message, never the traceback
                log.exception("%s failed", self.api)
                error = UnknownError(f"{type(exc).__name__}: {exc}")
            else:  # cancelled / interpreter exit: not a request outcome to record
                return
        plane = self.plane
        if plane.metrics is not None:
            plane.metrics.observe_request(
                self.ref.name, self.version if self.version is not None else self.ref.version,
                self.api, self.entrypoint, error.code.name if error is not None else "OK", seconds)
        if plane._observers and self.api in _OBSERVED:
            plane._notify(InferenceRecord(
                api=self.api, model=self.ref.name, version=self.version,
                signature_name=self.signature_name or ("" if self.api == "multi_inference" else DEFAULT_SIGNATURE),
                pinned=self.ref.pinned, inputs=self.inputs, outputs=None if error else self.outputs,
                latency=seconds, error=error, entrypoint=self.entrypoint,
            ))
        if error is not None and error is not exc:
            raise error from None

