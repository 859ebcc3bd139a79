"""Steady request traffic against a served model: every attempt counted, every answer's values checked.

What a swap must survive: ``Traffic`` runs ``clients`` threads that each send predicts back to back
(each with its own connection) until stopped. For every call it records when it ran, how long it
took, which version answered, how many attempts it took and whether it failed; every distinct answer
is compared (:mod:`tfship.tolerance`) with ``expected[version]``, the in-memory model's output for the
version that answered. Bounded: it stops by itself after ``max_seconds`` or ``max_requests``.

Callers (``via``, one per thread in turn, so one run can mix them):

* ``"client"``: tfship's client with ``RetryPolicy(max_attempts=1)``: one attempt per call;
* ``"stub"``: a plain ``PredictionServiceStub`` on a plain ``grpc`` channel (no tfship code);
* ``"http"``: plain ``httpx`` POSTs to ``rest_url``'s ``/v1/models/NAME:predict``;
* ``"client+retries"``: tfship's client with its default :class:`RetryPolicy`; each retry it makes
  is counted, so a summary tells what the client adds on top of the raw callers.

``failed_without_retries`` counts calls that failed plus calls that only succeeded on a retry: the
number a swap must keep at 0.

>>> expected = {1: model_v1(x)}                                     # doctest: +SKIP
>>> with Traffic("grpc://127.0.0.1:8500", "affine", x, expected=expected,
...              via=("client", "stub", "http"), rest_url="http://127.0.0.1:8501") as traffic:
...     expected[2] = model_v2(x)
...     swap(...)
>>> traffic.summary().failed_without_retries, traffic.summary().wrong_values
(0, 0)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tfship.tolerance import compare_outputs

__all__ = ["Traffic", "Sample", "TrafficSummary", "VIAS"]

VIAS = ("client", "stub", "http", "client+retries")
Outputs = dict[str, np.ndarray]


@dataclass(frozen=True)
class Sample:
    """One call: which thread and caller sent it, when, how long it took, what answered."""

    client: int
    start: float  # time.monotonic()
    latency: float
    version: int | None  # as the response said (None over REST: see Traffic.version_of)
    error: str | None = None
    via: str = "client"
    attempts: int = 1
    answer: int | None = None  # index of the distinct answer (Traffic.answers)


@dataclass(frozen=True)
class TrafficSummary:
    """Counts over every call so far. ``failed`` is after the caller's retries (none for raw callers)."""

    requests: int
    failed: int
    versions: dict[int, int]
    errors: list[str] = field(default_factory=list)
    attempts: int = 0
    retries: int = 0
    failed_without_retries: int = 0
    wrong_values: int = 0
    unchecked: int = 0
    by_via: dict[str, dict[str, int]] = field(default_factory=dict)
    value_errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every call answered at its first attempt, with the right values."""
        return self.requests > 0 and self.failed_without_retries == 0 and self.wrong_values == 0 \
            and self.unchecked == 0

    def line(self) -> str:
        """One line for logs and README tables."""
        return (f"{self.requests} calls, {self.attempts} attempts, {self.failed_without_retries} failed without "
                f"retries, {self.retries} retries, {self.failed} failed, {self.wrong_values} wrong values, "
                f"versions {dict(sorted(self.versions.items()))}")

    def latency_percentile(self, samples: Sequence[Sample], q: float) -> float:
        return float(np.percentile([s.latency for s in samples], q)) if samples else float("nan")


class Traffic:
    """``clients`` threads predicting ``inputs`` on ``model`` until stopped (see the module doc).

    ``url`` is the gRPC target (``grpc://``, a replica list or ``dns:///``) of the ``client``,
    ``stub`` and ``client+retries`` callers; ``rest_url`` the REST base URL of ``http`` callers.
    ``expected`` maps a version to its expected outputs (one array, or a dict by output name); it
    may grow while traffic runs (answers are checked when :meth:`summary` is called). Without it
    values are not checked. ``label`` sends every request to a version label. ``inputs`` may be a
    callable ``inputs(rng)`` (a numpy Generator per caller thread) returning each request's inputs,
    for traffic whose inputs vary like production's (tfship client callers only).
    """

    def __init__(self, url: str | None, model: str, inputs: Any, *, clients: int = 8, label: str | None = None,
                 via: str | Sequence[str] = "client", rest_url: str | None = None,
                 expected: Mapping[int, Any] | None = None, timeout: float = 30.0,
                 max_seconds: float = 600.0, max_requests: int = 2_000_000) -> None:
        vias = (via,) if isinstance(via, str) else tuple(via)
        unknown = [v for v in vias if v not in VIAS]
        if unknown or not vias:
            raise ValueError(f"unknown caller(s) {unknown}: use some of {VIAS}")
        grpc_vias = [v for v in vias if v != "http"]
        if grpc_vias and (url is None or url.startswith(("http://", "https://", "dns+http"))):
            raise ValueError(f"{grpc_vias} callers need a gRPC url (grpc://, dns:///); REST goes in rest_url")
        if "http" in vias and rest_url is None:
            raise ValueError("'http' callers need rest_url (http://HOST:PORT)")
        if callable(inputs) and set(vias) - {"client", "client+retries"}:
            raise ValueError("inputs(rng) (inputs that vary per request) works with tfship's client callers only")
        self.url, self.rest_url, self.model, self.label = url, rest_url, model, label
        self.inputs, self.vias, self.expected, self.timeout = inputs, vias, expected, timeout
        self.clients, self.max_seconds, self.max_requests = clients, max_seconds, max_requests
        self.samples: list[Sample] = []
        #: Every distinct answer (version as reported, outputs) and how many calls got it.
        self.answers: list[tuple[int | None, Outputs]] = []
        self._answer_index: dict[tuple[Any, ...], int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = threading.Barrier(clients + 1)
        self._named: dict[str, np.ndarray] | None = None

    def __enter__(self) -> Traffic:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if "stub" in self.vias or "http" in self.vias:
            self._named = self._name_inputs()
        for index in range(self.clients):
            via = self.vias[index % len(self.vias)]
            thread = threading.Thread(target=self._run, args=(index, via), name=f"traffic-{via}-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._started.wait(timeout=60)

    def stop(self) -> TrafficSummary:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        return self.summary()

    def wait_for_requests(self, count: int, timeout: float = 60.0) -> None:
        """Block until at least ``count`` requests completed (a warm, steady state)."""
        deadline = time.monotonic() + timeout
        while len(self.samples) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(self.samples)} of {count} requests completed in {timeout:g} s")
            self._stop.wait(0.02)

    # -- results ---------------------------------------------------------------------------------

    def summary(self) -> TrafficSummary:
        with self._lock:
            samples = list(self.samples)
        verdicts = self._check_answers()
        versions: dict[int, int] = {}
        by_via: dict[str, dict[str, int]] = {}
        wrong = unchecked = 0
        for s in samples:
            row = by_via.setdefault(s.via, {"requests": 0, "failed": 0, "retries": 0, "wrong_values": 0})
            row["requests"] += 1
            row["failed"] += s.error is not None
            row["retries"] += s.attempts - 1
            if s.answer is None:
                continue
            version, problem = verdicts[s.answer]
            if version is not None:
                versions[version] = versions.get(version, 0) + 1
            if problem == "unchecked":
                unchecked += 1
            elif problem:
                wrong += 1
                row["wrong_values"] += 1
        errors = [s.error for s in samples if s.error]
        value_errors = sorted({p for _, p in verdicts if p and p != "unchecked"})
        return TrafficSummary(
            requests=len(samples), failed=len(errors), versions=versions, errors=errors[:20],
            attempts=sum(s.attempts for s in samples), retries=sum(s.attempts - 1 for s in samples),
            failed_without_retries=sum(1 for s in samples if s.error or s.attempts > 1),
            wrong_values=wrong, unchecked=unchecked if self.expected is not None else 0,
            by_via=by_via, value_errors=value_errors[:20])

    def version_of(self, sample: Sample) -> int | None:
        """The version that answered: as the response said, or (REST) the one whose values it had."""
        return None if sample.answer is None else self._check_answers()[sample.answer][0]

    def window(self, start: float, end: float) -> list[Sample]:
        with self._lock:
            return [s for s in self.samples if start <= s.start < end]

    def _check_answers(self) -> list[tuple[int | None, str]]:
        """Per distinct answer: (version, problem) with problem "" when the values are right."""
        with self._lock:
            answers = list(self.answers)
        expected = dict(self.expected or {})
        verdicts: list[tuple[int | None, str]] = []
        for version, outputs in answers:
            if self.expected is None:
                verdicts.append((version, ""))
            elif version is not None:
                if version not in expected:
                    verdicts.append((version, "unchecked"))
                    continue
                problem = _mismatch(expected[version], outputs)
                verdicts.append((version, f"version {version}: {problem}" if problem else ""))
            else:  # REST says no version: the values must be those of one known version
                match = next((v for v, e in sorted(expected.items()) if not _mismatch(e, outputs)), None)
                verdicts.append((match, "" if match is not None
                                 else f"answer matches no version in {sorted(expected)}: {_brief(outputs)}"))
        return verdicts

    # -- the callers -----------------------------------------------------------------------------

    def _name_inputs(self) -> dict[str, np.ndarray]:
        if isinstance(self.inputs, Mapping):
            return {k: np.asarray(v) for k, v in self.inputs.items()}
        from tfship.client import connect

        with connect(self.url or self.rest_url or "") as client:  # set-up, not traffic: retries allowed
            sig = client.signature_info(self.model, label=self.label)
        (name,) = sig.inputs
        return {name: np.asarray(self.inputs)}

    def _caller(self, via: str, stack: Any) -> Callable[[], tuple[Outputs, int | None, int]]:
        """A function making one call: ``(outputs, version, attempts)``; raises on failure."""
        if via in ("client", "client+retries"):
            return self._tfship_caller(via, stack)
        if via == "stub":
            return self._stub_caller(stack)
        return self._http_caller(stack)

    def _tfship_caller(self, via: str, stack: Any) -> Callable[[], tuple[Outputs, int | None, int]]:
        from tfship.client import ClientConfig, RetryPolicy, connect

        retry = RetryPolicy() if via == "client+retries" else RetryPolicy(max_attempts=1)
        client = stack.enter_context(connect(self.url, config=ClientConfig(timeout=self.timeout, retry=retry)))
        attempts = [0]
        decide = client._retry_delay  # the client's own retry decision, observed to count retries

        def counting(exc: Any, attempt: int, deadline: float | None) -> float | None:
            delay = decide(exc, attempt, deadline)
            attempts[0] += delay is not None
            return delay

        client._retry_delay = counting

        rng = np.random.default_rng()
        make = self.inputs if callable(self.inputs) else None

        def call() -> tuple[Outputs, int | None, int]:
            attempts[0] = 1
            try:
                inputs = make(rng) if make is not None else self.inputs
                answer = client.predict_detailed(self.model, inputs, label=self.label)
            except Exception as exc:
                exc.attempts = attempts[0]  # type: ignore[attr-defined]
                raise
            return answer.outputs, answer.version, attempts[0]

        return call

    def _stub_caller(self, stack: Any) -> Callable[[], tuple[Outputs, int | None, int]]:
        import grpc
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
        from tfship.client.endpoints import parse_target
        from tfship.client.grpc_transport import channel_target

        target = parse_target(self.url or "")
        # Plain grpc: round robin over a replica list or DNS name; retries off (grpc's default for
        # a channel without a retry policy in its service config).
        options = [("grpc.enable_retries", 0), ("grpc.lb_policy_name", "round_robin"),
                   ("grpc.max_receive_message_length", -1)]
        channel = stack.enter_context(grpc.insecure_channel(channel_target(target), options=options))
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model
        if self.label:
            request.model_spec.version_label = self.label
        for name, array in (self._named or {}).items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(array))

        def call() -> tuple[Outputs, int | None, int]:
            response = stub.Predict(request, timeout=self.timeout)
            outputs = {k: tf.make_ndarray(v) for k, v in response.outputs.items()}
            return outputs, response.model_spec.version.value, 1

        return call

    def _http_caller(self, stack: Any) -> Callable[[], tuple[Outputs, int | None, int]]:
        import httpx

        where = f"/labels/{self.label}" if self.label else ""
        url = f"{(self.rest_url or '').rstrip('/')}/v1/models/{self.model}{where}:predict"
        # Plain httpx: no transport retries (httpx's default is 0), one connection per thread.
        http = stack.enter_context(httpx.Client(timeout=self.timeout, limits=httpx.Limits(max_connections=1)))
        named = self._named or {}
        body = {"inputs": {k: v.tolist() for k, v in named.items()}}

        def call() -> tuple[Outputs, int | None, int]:
            response = http.post(url, json=body)
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]}")
            raw = response.json()["outputs"]
            outputs = {k: np.asarray(v) for k, v in raw.items()} if isinstance(raw, dict) else {"": np.asarray(raw)}
            return outputs, None, 1

        return call

    def _run(self, index: int, via: str) -> None:
        from contextlib import ExitStack

        deadline = time.monotonic() + self.max_seconds
        with ExitStack() as stack:
            try:
                call = self._caller(via, stack)
            except Exception as exc:  # noqa: BLE001 - a caller that cannot start is a failed call, not a silent one
                with self._lock:
                    self.samples.append(Sample(index, time.monotonic(), 0.0, None,
                                               f"{via}: could not start: {type(exc).__name__}: {exc}", via))
                return
            finally:
                self._started.wait(timeout=60)
            while not self._stop.is_set() and time.monotonic() < deadline and len(self.samples) < self.max_requests:
                start = time.monotonic()
                try:
                    outputs, version, attempts = call()
                except Exception as exc:  # noqa: BLE001 - every failure is a failed request, bugs included
                    sample = Sample(index, start, time.monotonic() - start, None, f"{via}: {type(exc).__name__}: {exc}",
                                    via, getattr(exc, "attempts", 1))
                else:
                    sample = Sample(index, start, time.monotonic() - start, version, None, via, attempts,
                                    self._answer(version, outputs))
                with self._lock:
                    self.samples.append(sample)

    def _answer(self, version: int | None, outputs: Outputs) -> int:
        key = (version, *((name, a.dtype.str, a.shape, a.tobytes()) for name, a in sorted(outputs.items())))
        with self._lock:
            index = self._answer_index.get(key)
            if index is None:
                index = self._answer_index[key] = len(self.answers)
                self.answers.append((version, outputs))
            return index


def _mismatch(expected: Any, outputs: Outputs) -> str:
    """"" when ``outputs`` hold ``expected`` within tolerance, else what differs."""
    if not isinstance(expected, Mapping):
        if len(outputs) != 1:
            return f"expected one output, got {sorted(outputs)}"
        expected = {next(iter(outputs)): expected}
    elif "" in outputs and len(outputs) == 1 and len(expected) == 1:  # REST's bare single output
        outputs = {next(iter(expected)): outputs[""]}
    exp = {k: np.asarray(v) for k, v in expected.items()}
    bad = [d.describe() for d in compare_outputs(exp, outputs) if not d.ok]
    return "; ".join(bad)


def _brief(outputs: Outputs) -> str:
    return ", ".join(f"{k or 'output'}={np.asarray(v).ravel()[:4].tolist()}" for k, v in outputs.items())
