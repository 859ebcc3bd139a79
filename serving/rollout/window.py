"""What one replica observed for one model since its rollout settings last changed.

Counters and bounded latency reservoirs (the most recent :data:`RESERVOIR` values per series), so
a window costs constant memory however long a step lasts. The rollout tool reads
:meth:`Window.snapshot` from every replica and judges its gates on it.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import Any

import numpy as np

__all__ = ["Window", "RESERVOIR"]

#: latencies kept per series; p99 of the last 4096 answers is what the gates compare
RESERVOIR = 4096


class _Series:
    __slots__ = ("count", "errors", "latencies")

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.latencies: deque[float] = deque(maxlen=RESERVOIR)

    def add(self, seconds: float, error: bool) -> None:
        self.count += 1
        if error:
            self.errors += 1
        else:
            self.latencies.append(seconds)

    def snapshot(self) -> dict[str, Any]:
        lat = np.fromiter(self.latencies, float) if self.latencies else None
        return {
            "count": self.count,
            "errors": self.errors,
            "p50_ms": None if lat is None else round(float(np.percentile(lat, 50)) * 1e3, 4),
            "p99_ms": None if lat is None else round(float(np.percentile(lat, 99)) * 1e3, 4),
            "latency_samples": 0 if lat is None else int(lat.size),
        }


class Window:
    """Served answers by version (unpinned requests only) and shadow pairs, since ``started``."""

    def __init__(self) -> None:
        self.started = time.time()
        self._lock = threading.Lock()
        self._served: dict[int, _Series] = {}
        self._shadow = _Series()  # the candidate's shadow runs: latency and errors
        self.pairs = 0
        self.agreeing = 0
        self.worst_abs = 0.0
        self.worst_output = ""
        self.sampled = 0
        self.dropped = 0

    def served(self, version: int | None, seconds: float, error: bool) -> None:
        if version is None:
            return
        with self._lock:
            series = self._served.get(version)
            if series is None:
                series = self._served[version] = _Series()
            series.add(seconds, error)

    def shadow_sampled(self) -> None:
        with self._lock:
            self.sampled += 1

    def shadow_dropped(self) -> None:
        with self._lock:
            self.dropped += 1

    def shadow_result(self, seconds: float, *, error: bool, agree: bool = False,
                      worst_abs: float = 0.0, output: str = "") -> None:
        with self._lock:
            self._shadow.add(seconds, error)
            if error:
                return
            self.pairs += 1
            if agree:
                self.agreeing += 1
            if math.isnan(worst_abs) or worst_abs > self.worst_abs:
                self.worst_abs, self.worst_output = (math.inf if math.isnan(worst_abs) else worst_abs), output

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            shadow = self._shadow.snapshot()
            return {
                "started": self.started,
                "seconds": round(time.time() - self.started, 3),
                "served": {str(v): s.snapshot() for v, s in sorted(self._served.items())},
                "shadow": {
                    "sampled": self.sampled,
                    "dropped_saturated": self.dropped,
                    "pairs": self.pairs,
                    "agreeing": self.agreeing,
                    "worst_abs_error": self.worst_abs if math.isfinite(self.worst_abs) else "inf",
                    "worst_output": self.worst_output,
                    "candidate_runs": shadow["count"],
                    "candidate_errors": shadow["errors"],
                    "candidate_p50_ms": shadow["p50_ms"],
                    "candidate_p99_ms": shadow["p99_ms"],
                },
            }
