"""Steady request traffic against a served model, recording every answer's version and latency.

What a swap must survive: ``Traffic`` runs ``clients`` threads that each send predicts back to back
(each with its own connection) until stopped, and records for every request when it ran, how long
it took, which version answered and whether it failed. Bounded: it stops by itself after
``max_seconds`` or ``max_requests`` even if nobody calls :meth:`Traffic.stop`.

>>> with Traffic("grpc://127.0.0.1:8500", "mnist", x, clients=8) as traffic:   # doctest: +SKIP
...     swap(...)
>>> traffic.summary().failed
0
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Traffic", "Sample", "TrafficSummary"]


@dataclass(frozen=True)
class Sample:
    client: int
    start: float  # time.monotonic()
    latency: float
    version: int | None
    error: str | None = None


@dataclass(frozen=True)
class TrafficSummary:
    requests: int
    failed: int
    versions: dict[int, int]
    errors: list[str] = field(default_factory=list)

    def latency_percentile(self, samples: Sequence[Sample], q: float) -> float:
        return float(np.percentile([s.latency for s in samples], q)) if samples else float("nan")


class Traffic:
    """``clients`` threads predicting ``inputs`` on ``model`` at ``url`` until stopped.

    Needs a gRPC URL (the response's model_spec names the version that answered). ``label`` sends
    every request to a version label instead of the default version.
    """

    def __init__(self, url: str, model: str, inputs: Any, *, clients: int = 8, label: str | None = None,
                 max_seconds: float = 600.0, max_requests: int = 2_000_000) -> None:
        if not url.startswith(("grpc://", "grpcs://")):
            raise ValueError("Traffic reports the answering version, which only gRPC responses carry: use grpc://")
        self.url, self.model, self.inputs, self.label = url, model, inputs, label
        self.clients, self.max_seconds, self.max_requests = clients, max_seconds, max_requests
        self.samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = threading.Barrier(clients + 1)

    def __enter__(self) -> Traffic:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        for index in range(self.clients):
            thread = threading.Thread(target=self._run, args=(index,), name=f"traffic-{index}", daemon=True)
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

    def summary(self) -> TrafficSummary:
        with self._lock:
            samples = list(self.samples)
        versions: dict[int, int] = {}
        errors = [s.error for s in samples if s.error]
        for s in samples:
            if s.version is not None:
                versions[s.version] = versions.get(s.version, 0) + 1
        return TrafficSummary(len(samples), len(errors), versions, errors[:20])

    def window(self, start: float, end: float) -> list[Sample]:
        with self._lock:
            return [s for s in self.samples if start <= s.start < end]

    def _run(self, index: int) -> None:
        from tfship.client import connect

        deadline = time.monotonic() + self.max_seconds
        with connect(self.url) as client:
            self._started.wait(timeout=60)
            while not self._stop.is_set() and time.monotonic() < deadline and len(self.samples) < self.max_requests:
                start = time.monotonic()
                try:
                    answer = client.predict_detailed(self.model, self.inputs, label=self.label)
                    sample = Sample(index, start, time.monotonic() - start, answer.version)
                except Exception as exc:  # noqa: BLE001 - every failure is a failed request, bugs included
                    sample = Sample(index, start, time.monotonic() - start, None, f"{type(exc).__name__}: {exc}")
                with self._lock:
                    self.samples.append(sample)
