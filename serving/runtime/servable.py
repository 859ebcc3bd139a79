"""One loaded model version, executed the way TF Serving executes a SavedModel.

:class:`Servable` is what the server core (versions, gRPC, REST) calls: it loads a version dir
(``Servable.load``), replays warmup, optionally batches concurrent calls, and implements the
Predict / Classify / Regress / MultiInference semantics with TF Serving's codes and messages
(spec sections 3.3, 5.1-5.3, 7, 9). Everything is thread-safe.

>>> s = Servable.load("half", 123, Path(".../saved_model_half_plus_two_cpu/00000123"))
>>> s.predict("", {"x": np.array([[1.0]], np.float32)})["y"]
array([[2.5]], dtype=float32)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tfship.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    UnavailableError,
    UnimplementedError,
)

from .session import SessionBundle

if TYPE_CHECKING:
    from tensorflow.core.protobuf.meta_graph_pb2 import SignatureDef
    from tfship.serving.config.batching import BatchingParameters

    from .batching import Batcher

__all__ = [
    "Classification",
    "LoadOptions",
    "Servable",
    "DEFAULT_SIGNATURE",
    "CLASSIFY_METHOD",
    "REGRESS_METHOD",
    "PREDICT_METHOD",
]

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"

#: a non-batched run measured (for its batch size) to take at most this long may run on the
#: server's loop itself when the loop is quiet (one request at a time): it saves the executor
#: round trip, and blocks the loop no longer than this for a request arriving meanwhile
INLINE_RUN_SECONDS = 0.002


@dataclass(frozen=True)
class LoadOptions:
    """How to load a version (mirrors the model server flags that affect loading)."""

    tags: tuple[str, ...] = ("serve",)
    enable_warmup: bool = True
    warmup_iterations: int = 0  # >0 overrides each record's num_request_iterations
    batching: BatchingParameters | None = None
    on_batch: Callable[[int], None] | None = None  # metrics hook, called with each batch size
    on_run: Callable[[str, float], None] | None = None  # metrics hook: (API, seconds) of each TF run
    on_examples: Callable[[int], None] | None = None  # metrics hook: examples per Classify/Regress/...
    on_warmup: Callable[[str, float], None] | None = None  # metrics hook: (status, seconds) of warmup
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    # the server's event loop (serving.event_loop.ServingLoop): the batcher schedules on it
    serving_loop: Any = None


@dataclass(frozen=True)
class Classification:
    """Classify result: ``classes`` (object array of bytes) and/or ``scores`` (float32), [batch, n].

    A missing tensor is ``None`` (TF Serving then leaves labels ``""`` / scores 0).
    """

    classes: np.ndarray | None
    scores: np.ndarray | None


def _run_class(feeds: Mapping[str, np.ndarray], fetches: Sequence[str]) -> tuple[tuple[str, ...], int]:
    """Runs of the same fetches whose batch sizes are within a factor of two share a class."""
    rows = 0
    for value in feeds.values():
        rows = int(value.shape[0]) if value.ndim else 0
        break
    return tuple(fetches), rows.bit_length()


def _keys(mapping: Any) -> str:
    return ",".join(sorted(mapping))


def _proto_text(signature: Any) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(signature)


class Servable:
    """A loaded SavedModel version: predict / classify / regress / multi_inference."""

    def __init__(
        self, name: str, version: int, path: Path, bundle: SessionBundle, options: LoadOptions
    ) -> None:
        self.name = name
        self.version = version
        self.path = path
        self.options = options
        self._bundle = bundle
        self.signature_defs: Mapping[str, SignatureDef] = bundle.signature_defs
        self._defaults: dict[str, dict[str, np.ndarray]] = {}
        self._batcher: Batcher | None = None
        #: seconds of the last non-batched run, by (fetches, batch size class)
        self._run_seconds: dict[tuple[tuple[str, ...], int], float] = {}
        #: runs made on the loop itself (see INLINE_RUN_SECONDS)
        self.inline_runs = 0
        self._closed = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def load(
        cls, name: str, version: int, path: Path, options: LoadOptions | None = None
    ) -> Servable:
        """Load ``path`` (a version dir), set up batching, replay warmup.

        Raises ServingError subclasses with TF Serving's codes: NOT_FOUND (no SavedModel),
        UNIMPLEMENTED (legacy SessionBundle), INVALID_ARGUMENT (bad batching parameters),
        warmup errors (TF Serving compat spec §9).
        """
        options = options or LoadOptions()
        path = Path(path)
        if options.batching is not None:
            from .batching import validate_batching_parameters

            validate_batching_parameters(options.batching)
        bundle = SessionBundle.load(
            path,
            options.tags,
            intra_op_threads=options.intra_op_threads,
            inter_op_threads=options.inter_op_threads,
        )
        servable = cls(name, version, path, bundle, options)
        try:
            if options.batching is not None:
                from .batching import Batcher

                servable._batcher = Batcher(
                    bundle.run, options.batching, on_batch=options.on_batch,
                    serving_loop=options.serving_loop,
                )
            if options.enable_warmup:
                from .warmup import replay_warmup

                replay_warmup(servable, options.warmup_iterations, options.on_warmup)
        except BaseException:
            servable.close()
            raise
        return servable

    def close(self) -> None:
        """Stop the batcher and close the session; call after in-flight requests drained."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._batcher is not None:
            self._batcher.close()
        self._bundle.close()

    # ------------------------------------------------------------------ execution

    def _run(
        self,
        api: str,
        feeds: dict[str, np.ndarray],
        fetches: Sequence[str],
        timeout: float | None,
        batchable: bool = True,
    ) -> list[np.ndarray]:
        self._check_open()
        on_run = self.options.on_run
        start = time.perf_counter() if on_run is not None else 0.0
        if batchable and self._batcher is not None:
            values = self._batcher.run(feeds, fetches, timeout)
        else:
            values = self._timed_run(feeds, fetches, timeout)
        if on_run is not None:  # runtime_latency: like upstream, successful runs only
            on_run(api, time.perf_counter() - start)
        return values

    async def _run_async(
        self,
        api: str,
        feeds: dict[str, np.ndarray],
        fetches: Sequence[str],
        timeout: float | None,
        serving_loop: Any,
    ) -> list[np.ndarray]:
        """:meth:`_run` from the server's loop: into the batcher, else on the loop's executor -
        or on the loop itself, for a run known to be short when the loop is quiet."""
        self._check_open()
        on_run = self.options.on_run
        start = time.perf_counter() if on_run is not None else 0.0
        if self._batcher is not None:
            values = await self._batcher.submit(
                feeds, fetches, timeout, alone=lambda: self._unbatched_async(feeds, fetches, timeout, serving_loop))
        else:
            values = await self._unbatched_async(feeds, fetches, timeout, serving_loop)
        if on_run is not None:
            on_run(api, time.perf_counter() - start)
        return values

    async def _unbatched_async(
        self, feeds: Mapping[str, np.ndarray], fetches: Sequence[str], timeout: float | None, serving_loop: Any
    ) -> list[np.ndarray]:
        if self._short(feeds, fetches) and serving_loop.quiet():
            self.inline_runs += 1
            return self._timed_run(feeds, fetches, timeout)
        return await serving_loop.run_blocking(self._timed_run, feeds, fetches, timeout)

    @property
    def batching(self) -> bool:
        """Calls go through a batcher (``--enable_batching``)."""
        return self._batcher is not None

    def _timed_run(
        self, feeds: Mapping[str, np.ndarray], fetches: Sequence[str], timeout: float | None
    ) -> list[np.ndarray]:
        start = time.perf_counter()
        values = self._bundle.run(feeds, fetches, timeout)
        self._run_seconds[_run_class(feeds, fetches)] = time.perf_counter() - start
        return values

    def _short(self, feeds: Mapping[str, np.ndarray], fetches: Sequence[str]) -> bool:
        """The last run of these fetches at this batch size class took at most INLINE_RUN_SECONDS
        (none yet: no)."""
        last = self._run_seconds.get(_run_class(feeds, fetches))
        return last is not None and last <= INLINE_RUN_SECONDS

    def _check_open(self) -> None:
        if self._closed:
            raise UnavailableError(
                f"Servable {self.name} version {self.version} is unloaded; retry the request."
            )

    def _signature(self, signature_name: str) -> tuple[str, Any]:
        name = signature_name or DEFAULT_SIGNATURE
        return name, self.signature_defs.get(name)

    def _signature_defaults(self, name: str, signature: Any) -> dict[str, np.ndarray]:
        cached = self._defaults.get(name)
        if cached is None:
            from tfship.wire.tensor import to_ndarray

            cached = {
                alias: to_ndarray(proto)
                for alias, proto in getattr(signature, "defaults", {}).items()
            }
            self._defaults[name] = cached
        return cached

    def predict(
        self,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
        timeout: float | None = None,
    ) -> dict[str, np.ndarray]:
        """Predict (TF Serving compat spec §5.1): run ``signature_name`` ("" = serving_default) on ``inputs``.

        Returns ``{output alias: ndarray}`` for the filtered (or all) outputs.
        """
        feeds, fetches, aliases = self._predict_plan(signature_name, inputs, output_filter)
        values = self._run("Predict", feeds, fetches, timeout)
        return dict(zip(aliases, values, strict=True))

    async def predict_async(
        self,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str],
        timeout: float | None,
        serving_loop: Any,
    ) -> dict[str, np.ndarray]:
        """:meth:`predict` on the server's event loop (``serving.event_loop.ServingLoop``)."""
        feeds, fetches, aliases = self._predict_plan(signature_name, inputs, output_filter)
        values = await self._run_async("Predict", feeds, fetches, timeout, serving_loop)
        return dict(zip(aliases, values, strict=True))

    def _predict_plan(
        self, signature_name: str, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str]
    ) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
        """Check ``inputs`` and ``output_filter`` against the signature: (feeds, fetches, aliases)."""
        name, signature = self._signature(signature_name)
        if signature is None:
            raise FailedPreconditionError(
                f'Serving signature key "{name}" not found.', signature=name
            )
        sig_inputs = signature.inputs
        feeds: dict[str, np.ndarray] = {}
        if len(inputs) != len(sig_inputs):
            defaults = self._signature_defaults(name, signature)
            missing = set(sig_inputs) - set(inputs)
            extra = set(inputs) - set(sig_inputs)
            if extra or not missing or not missing <= set(defaults):
                raise InvalidArgumentError(
                    f"input size does not match signature: {len(inputs)}!={len(sig_inputs)} "
                    f"len({{{_keys(inputs)}}}) != len({{{_keys(sig_inputs)}}}). "
                    f"Sent extra: {{{_keys(extra)}}}. Missing but required: {{{_keys(missing)}}}.",
                    signature=name,
                )
            for alias in missing:
                feeds[sig_inputs[alias].name] = defaults[alias]
        for alias, value in inputs.items():
            info = sig_inputs.get(alias)
            if info is None:
                raise InvalidArgumentError(
                    f"input tensor alias not found in signature: {alias}. "
                    f"Inputs expected to be in the set {{{_keys(sig_inputs)}}}.",
                    signature=name,
                )
            if type(value) is not np.ndarray:
                value = np.asarray(value)
            expected = self._bundle.feed_dtype(info.name)
            if expected is not None and value.dtype != expected and not (
                expected.kind == "O" and value.dtype.kind in "SUO"
            ):
                raise InvalidArgumentError(
                    f"Expects arg[{alias}] to be {_type_name(expected)} but "
                    f"{_type_name(value.dtype)} is provided: send input '{alias}' as "
                    f"{_type_name(expected)} values.",
                    signature=name,
                )
            feeds[info.name] = value
        sig_outputs = signature.outputs
        if output_filter:
            aliases: list[str] = []
            for alias in output_filter:
                info = sig_outputs.get(alias)
                if info is None:
                    raise InvalidArgumentError(
                        f"output tensor alias not found in signature: {alias} "
                        f"Outputs expected to be in the set {{{_keys(sig_outputs)}}}.",
                        signature=name,
                    )
                if alias in aliases:
                    raise InvalidArgumentError(
                        f"duplicate output tensor alias: {alias}", signature=name
                    )
                aliases.append(alias)
        else:
            aliases = list(sig_outputs)
        fetches = [sig_outputs[alias].name for alias in aliases]
        return feeds, fetches, aliases

    # ------------------------------------------------------------------ classify / regress

    def _classify_signature(self, signature_name: str) -> tuple[str, Any]:
        name, signature = self._signature(signature_name)
        if signature is None:
            raise InvalidArgumentError(
                f"No signature was found with the name: {name}", signature=name
            )
        return name, signature

    @staticmethod
    def _classification_tensors(signature: Any) -> tuple[str, list[str]]:
        if len(signature.inputs) != 1:
            raise InvalidArgumentError("Expected one input Tensor.")
        if len(signature.outputs) not in (1, 2):
            raise InvalidArgumentError(
                f"Expected one or two output Tensors, found {len(signature.outputs)}"
            )
        if "inputs" not in signature.inputs:
            raise FailedPreconditionError(
                f"No classification inputs found in SignatureDef: {_proto_text(signature)}"
            )
        outputs = [signature.outputs[k].name for k in ("classes", "scores") if k in signature.outputs]
        if not outputs:
            raise FailedPreconditionError(
                'Expected classification signature outputs to contain at least one of "classes" '
                f'or "scores". Signature was: {_proto_text(signature)}'
            )
        return signature.inputs["inputs"].name, outputs

    @staticmethod
    def _regression_tensors(signature: Any) -> tuple[str, list[str]]:
        if len(signature.inputs) != 1:
            raise InvalidArgumentError("Expected one input Tensor.")
        if len(signature.outputs) != 1:
            raise InvalidArgumentError("Expected one output Tensor.")
        if "inputs" not in signature.inputs:
            raise FailedPreconditionError(
                f"No regression inputs found in SignatureDef: {_proto_text(signature)}"
            )
        if "outputs" not in signature.outputs:
            raise FailedPreconditionError(
                f"No regression outputs found in SignatureDef: {_proto_text(signature)}"
            )
        return signature.inputs["inputs"].name, [signature.outputs["outputs"].name]

    @staticmethod
    def _classification_result(signature: Any, n: int, values: dict[str, np.ndarray]) -> Classification:
        classes = values.get(signature.outputs["classes"].name) if "classes" in signature.outputs else None
        scores = values.get(signature.outputs["scores"].name) if "scores" in signature.outputs else None
        for label, tensor in (("classes", classes), ("scores", scores)):
            if tensor is None:
                continue
            if tensor.ndim != 2:
                raise InvalidArgumentError(
                    "Expected Tensor shape: [batch_size num_classes] but got "
                    f"[{','.join(str(d) for d in tensor.shape)}]"
                )
            if label == "classes" and tensor.dtype != object:
                raise InvalidArgumentError(
                    f"Expected classes Tensor of DT_STRING. Got: {_dtype_name(tensor)}"
                )
            if label == "scores" and tensor.dtype != np.float32:
                raise InvalidArgumentError(
                    f"Expected scores Tensor of DT_FLOAT. Got: {_dtype_name(tensor)}"
                )
            if tensor.shape[0] != n:
                raise InvalidArgumentError(
                    f"Expected {label} output batch size of {n}. Got: {tensor.shape[0]}"
                )
        if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
            raise InvalidArgumentError(
                "Tensors class and score should match in dim_size(1). "
                f"Got {classes.shape[1]} vs. {scores.shape[1]}"
            )
        return Classification(classes=classes, scores=scores)

    @staticmethod
    def _regression_result(n: int, value: np.ndarray) -> np.ndarray:
        if not (value.ndim == 1 or (value.ndim == 2 and value.shape[1] == 1)):
            raise InvalidArgumentError(
                "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] "
                f"but got [{','.join(str(d) for d in value.shape)}]"
            )
        if value.shape[0] != n:
            raise InvalidArgumentError(
                f"Input batch size did not match output batch size: {n} vs. {value.shape[0]}"
            )
        if value.dtype != np.float32:
            raise InvalidArgumentError(
                f"Expected output Tensor of DT_FLOAT.  Got: {_dtype_name(value)}"
            )
        return value.reshape(n)

    def _count_examples(self, count: int) -> None:
        if self.options.on_examples is not None:
            self.options.on_examples(count)

    @staticmethod
    def _examples_tensor(examples: Sequence[bytes]) -> np.ndarray:
        if len(examples) == 0:
            raise InvalidArgumentError("Input is empty.")
        tensor = np.empty(len(examples), dtype=object)
        tensor[:] = list(examples)
        return tensor

    def classify(
        self, signature_name: str, examples: Sequence[bytes], timeout: float | None = None
    ) -> Classification:
        """Classify (TF Serving compat spec §5.2): serialized tf.Examples fed to the ``inputs`` alias."""
        name, signature = self._classify_signature(signature_name)
        input_name, fetches = self._classification_tensors(signature)
        tensor = self._examples_tensor(examples)
        self._count_examples(len(examples))
        values = self._run("Classify", {input_name: tensor}, fetches, timeout)
        return self._classification_result(signature, len(examples), dict(zip(fetches, values, strict=True)))

    def regress(
        self, signature_name: str, examples: Sequence[bytes], timeout: float | None = None
    ) -> np.ndarray:
        """Regress (TF Serving compat spec §5.2): one float32 value per example, shape [batch]."""
        name, signature = self._classify_signature(signature_name)
        input_name, fetches = self._regression_tensors(signature)
        tensor = self._examples_tensor(examples)
        self._count_examples(len(examples))
        (value,) = self._run("Regress", {input_name: tensor}, fetches, timeout)
        return self._regression_result(len(examples), value)

    def multi_inference(
        self,
        tasks: Sequence[tuple[str, str]],
        examples: Sequence[bytes],
        timeout: float | None = None,
    ) -> list[Classification | np.ndarray]:
        """MultiInference (TF Serving compat spec §5.3): several classify/regress signatures, one session run.

        ``tasks`` = ``(signature_name, method_name)`` in request order; results in that order.
        (Model-name checks across tasks are the frontend's job: it knows the model specs.)
        """
        seen: set[str] = set()
        plan: list[tuple[str, Any, str]] = []
        # Each signature may read the examples through its own placeholder (a TF2 export gives
        # every signature one): the one example tensor is fed to all of them, like upstream.
        input_names: list[str] = []
        fetches: list[str] = []
        for signature_name, method in tasks:
            name = signature_name or DEFAULT_SIGNATURE
            if name in seen:
                raise InvalidArgumentError(f"Duplicate evaluation of signature: {name}")
            seen.add(name)
            signature = self.signature_defs.get(name)
            if signature is None:
                raise InvalidArgumentError(f"Requested signature not found in model graph: {name}")
            if method == REGRESS_METHOD:
                task_input, task_fetches = self._regression_tensors(signature)
            elif method == CLASSIFY_METHOD:
                task_input, task_fetches = self._classification_tensors(signature)
            else:
                raise UnimplementedError(f"Unsupported signature method_name: {method}")
            if task_input not in input_names:
                input_names.append(task_input)
            fetches.extend(f for f in task_fetches if f not in fetches)
            plan.append((name, signature, method))
        tensor = self._examples_tensor(examples)
        if not plan:
            return []
        self._count_examples(len(examples))
        feeds = {name: tensor for name in input_names}
        outputs = self._run("MultiInference", feeds, fetches, timeout, batchable=False)
        values = dict(zip(fetches, outputs, strict=True))
        results: list[Classification | np.ndarray] = []
        for _, signature, method in plan:
            if method == REGRESS_METHOD:
                results.append(
                    self._regression_result(len(examples), values[signature.outputs["outputs"].name])
                )
            else:
                results.append(self._classification_result(signature, len(examples), values))
        return results


def _type_name(dtype: np.dtype) -> str:
    """TF's short type name (float, int32, string) for a numpy dtype."""
    if dtype.kind in "SUO":
        return "string"
    name = np.dtype(dtype).name
    return {"float32": "float", "float64": "double", "float16": "half"}.get(name, name)


def _dtype_name(array: np.ndarray) -> str:
    from tfship.wire import dtypes

    try:
        return dtypes.from_numpy(array.dtype).name
    except Exception:  # an exotic dtype: still say what it is
        return str(array.dtype)
