"""Shadow runs: the candidate answers a copy of a request nobody waits for, and is compared.

Never ahead of real requests: a shadow run starts only when one of its ``max_in_flight`` workers
is idle *and* the server is not saturated (``busy()``); otherwise it is dropped and counted at
once. There is no queue, so shadow work cannot pile up behind a burst and then compete with the
requests that follow it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from tfship.tolerance import Tolerance, compare_outputs, resolve_tolerances

from .window import Window

__all__ = ["ShadowRunner", "ShadowJob", "tolerances_of"]

log = logging.getLogger("tfship.serving")


@dataclass(frozen=True)
class ShadowJob:
    """One stable answer to replay on the candidate."""

    model: str
    candidate: int
    signature: str
    inputs: Mapping[str, np.ndarray]
    outputs: Mapping[str, np.ndarray]  # the stable version's answer
    window: Window


def tolerances_of(version_dir: Any) -> dict[str, Tolerance]:
    """The tolerances the version was exported with (its manifest), or the defaults."""
    from tfship.errors import TfshipError
    from tfship.manifest import read_manifest

    try:
        return dict(read_manifest(version_dir).tolerances)
    except (TfshipError, OSError):
        return resolve_tolerances(None)


class ShadowRunner:
    """Runs :class:`ShadowJob` s on ``max_in_flight`` threads of its own.

    ``acquire(model, version)`` returns a context-managed handle on a loaded version (the
    manager's refcount, so an unload waits for a running shadow); ``busy()`` says the server is
    saturated; ``on_result(model, version, agree, worst_abs, seconds, error)`` feeds metrics.
    """

    def __init__(
        self,
        acquire: Callable[[str, int], Any],
        *,
        max_in_flight: int = 1,
        busy: Callable[[], bool] = lambda: False,
        on_result: Callable[..., None] | None = None,
        on_drop: Callable[[str, int], None] | None = None,
    ) -> None:
        self._acquire = acquire
        self._busy = busy
        self._on_result = on_result
        self._on_drop = on_drop
        self._slots = threading.BoundedSemaphore(max(1, max_in_flight))
        self._pool = ThreadPoolExecutor(max_workers=max(1, max_in_flight), thread_name_prefix="shadow")
        self._tolerances: dict[tuple[str, int], dict[str, Tolerance]] = {}
        self._closed = False

    def offer(self, job: ShadowJob) -> bool:
        """Start ``job`` now if a worker is idle and the server is not saturated; else drop it."""
        job.window.shadow_sampled()
        if self._closed or self._busy() or not self._slots.acquire(blocking=False):
            job.window.shadow_dropped()
            if self._on_drop is not None:
                self._on_drop(job.model, job.candidate)
            return False
        try:
            self._pool.submit(self._run, job)
        except RuntimeError:  # shut down between the check and the submit
            self._slots.release()
            job.window.shadow_dropped()
            return False
        return True

    def _run(self, job: ShadowJob) -> None:
        start = time.perf_counter()
        try:
            with self._acquire(job.model, job.candidate) as handle:
                outputs = handle.servable.predict(job.signature, job.inputs, list(job.outputs))
                seconds = time.perf_counter() - start
                tolerances = self._tolerances_for(job.model, job.candidate, handle.servable)
            diffs = compare_outputs(job.outputs, outputs, tolerances)
            agree = all(d.ok for d in diffs)
            worst = max(diffs, key=lambda d: (d.max_abs if d.max_abs == d.max_abs else float("inf")), default=None)
            worst_abs = worst.max_abs if worst is not None else 0.0
            job.window.shadow_result(seconds, error=False, agree=agree, worst_abs=worst_abs,
                                     output=worst.name if worst is not None else "")
            if self._on_result is not None:
                self._on_result(job.model, job.candidate, agree, worst_abs, seconds, False)
        except Exception as exc:  # noqa: BLE001 - a candidate error is a measurement, never a crash
            seconds = time.perf_counter() - start
            log.debug("shadow run of %s version %d failed: %s", job.model, job.candidate, exc)
            job.window.shadow_result(seconds, error=True)
            if self._on_result is not None:
                self._on_result(job.model, job.candidate, False, 0.0, seconds, True)
        finally:
            self._slots.release()

    def _tolerances_for(self, model: str, version: int, servable: Any) -> dict[str, Tolerance]:
        key = (model, version)
        cached = self._tolerances.get(key)
        if cached is None:
            cached = self._tolerances[key] = tolerances_of(getattr(servable, "path", ""))
        return cached

    def close(self) -> None:
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
