"""Shadow runs: the candidate answers copies of requests nobody waits for, and is compared.

Never ahead of real requests: shadow work has its own lane (one thread, ``max_pending`` jobs at
most). A sampled request whose copy finds the server saturated (``busy()``) or the lane full is
dropped and counted at once, so shadow work cannot pile up behind a burst and then compete with
the requests that follow it. The lane runs what accumulated as one batch per candidate and input
shape, so each pair costs a slice of one model run, not a run of its own: that keeps what
shadowing takes from the callers (CPU, the GIL) small.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tfship.tolerance import Tolerance, compare_outputs, resolve_tolerances

from .window import Window

__all__ = ["ShadowRunner", "ShadowJob", "tolerances_of", "agreement"]

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

    def key(self) -> tuple[Any, ...]:
        """Jobs with equal keys run as one batch (same candidate, signature, inputs but the batch size)."""
        shapes = tuple(sorted((k, v.dtype.str, v.shape[1:]) for k, v in self.inputs.items()))
        return (self.model, self.candidate, self.signature, shapes, tuple(sorted(self.outputs)))

    @property
    def rows(self) -> int:
        first = next(iter(self.inputs.values()), None)
        return int(first.shape[0]) if first is not None and first.ndim else 1


def tolerances_of(version_dir: Any) -> dict[str, Tolerance]:
    """The tolerances the version was exported with (its manifest), or the defaults."""
    from tfship.errors import TfshipError
    from tfship.manifest import read_manifest

    try:
        return dict(read_manifest(version_dir).tolerances)
    except (TfshipError, OSError):
        return resolve_tolerances(None)


def agreement(expected: Mapping[str, np.ndarray], actual: Mapping[str, np.ndarray], rows: list[int],
              tolerances: Mapping[str, Tolerance]) -> list[tuple[bool, float, str]]:
    """Per job (``rows[i]`` consecutive batch rows each): (agrees, worst abs error, worst output).

    Numeric outputs are compared for the whole batch at once (``|a - e| <= atol + rtol*|e|``, NaNs
    in the same places); others, and outputs whose first axis is not the batch, job by job.
    """
    starts = np.cumsum([0, *rows[:-1]])
    total = int(sum(rows))
    agree = np.ones(len(rows), bool)
    worst = np.zeros(len(rows))
    worst_name = [""] * len(rows)
    for name, e in expected.items():
        a = actual.get(name)
        per_job: tuple[np.ndarray, np.ndarray] | None = None
        if a is not None and e.shape == a.shape and e.ndim and e.shape[0] == total and e.dtype.kind in "fiub" \
                and a.dtype.kind in "fiub" and total:
            tol = tolerances.get(e.dtype.name, Tolerance(0.0, 0.0))
            ef, af = e.astype(np.float64).reshape(total, -1), a.astype(np.float64).reshape(total, -1)
            nan_e, nan_a = np.isnan(ef), np.isnan(af)
            with np.errstate(invalid="ignore"):
                diff = np.where(nan_e & nan_a, 0.0, np.abs(af - ef))
                diff = np.where(ef == af, 0.0, diff)  # equal infinities
                ok = (diff <= tol.atol + tol.rtol * np.abs(ef)) & (nan_e == nan_a)
            row_ok = ok.all(axis=1) if ok.shape[1] else np.ones(total, bool)
            row_worst = np.nan_to_num(diff, nan=math.inf).max(axis=1) if diff.shape[1] else np.zeros(total)
            row_worst = np.where(nan_e.any(axis=1) != nan_a.any(axis=1), math.inf, row_worst)
            per_job = (np.logical_and.reduceat(row_ok, starts), np.maximum.reduceat(row_worst, starts))
        else:
            oks, worsts = [], []
            for start, n in zip(starts, rows, strict=True):
                exp = {name: e[start:start + n] if e.ndim and e.shape[0] == total else e}
                act = {} if a is None else {name: a[start:start + n] if a.ndim and a.shape[0] == total else a}
                d = compare_outputs(exp, act, tolerances)[0]
                oks.append(d.ok)
                worsts.append(d.max_abs if d.max_abs == d.max_abs else math.inf)
            per_job = (np.array(oks, bool), np.array(worsts, float))
        job_ok, job_worst = per_job
        agree &= job_ok
        for i in np.flatnonzero(job_worst > worst):
            worst[i], worst_name[i] = job_worst[i], name
    return [(bool(agree[i]), float(worst[i]), worst_name[i]) for i in range(len(rows))]


class ShadowRunner:
    """Runs :class:`ShadowJob` s on a lane of its own (one thread, at most ``max_pending`` waiting).

    ``acquire(model, version)`` returns a context-managed handle on a loaded version (the
    manager's refcount, so an unload waits for a running shadow batch); ``busy()`` says the server
    is saturated; ``on_result(model, version, agree, worst_abs, seconds, error)`` and
    ``on_drop(model, version)`` feed metrics.
    """

    def __init__(
        self,
        acquire: Callable[[str, int], Any],
        *,
        max_pending: int = 64,
        max_batch_rows: int = 256,
        busy: Callable[[], bool] = lambda: False,
        on_result: Callable[..., None] | None = None,
        on_drop: Callable[[str, int], None] | None = None,
    ) -> None:
        self._acquire = acquire
        self._busy = busy
        self._on_result = on_result
        self._on_drop = on_drop
        self._max_pending = max(1, max_pending)
        self._max_rows = max(1, max_batch_rows)
        self._pending: list[ShadowJob] = []
        self._cond = threading.Condition()
        self._tolerances: dict[tuple[str, int], dict[str, Tolerance]] = {}
        self._closed = False
        self._thread: threading.Thread | None = None

    def offer(self, job: ShadowJob) -> bool:
        """Queue ``job`` in the shadow lane unless the server is saturated or the lane is full."""
        job.window.shadow_sampled()
        with self._cond:
            accepted = not self._closed and len(self._pending) < self._max_pending and not self._busy()
            if accepted:
                self._pending.append(job)
                if self._thread is None:
                    self._thread = threading.Thread(target=self._work, name="shadow", daemon=True)
                    self._thread.start()
                self._cond.notify()
        if not accepted:
            job.window.shadow_dropped()
            if self._on_drop is not None:
                self._on_drop(job.model, job.candidate)
        return accepted

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                jobs, self._pending = self._pending, []
            groups: dict[tuple[Any, ...], list[ShadowJob]] = {}
            for job in jobs:
                groups.setdefault(job.key(), []).append(job)
            for group in groups.values():
                batch: list[ShadowJob] = []
                rows = 0
                for job in group:
                    if batch and rows + job.rows > self._max_rows:
                        self._run(batch)
                        batch, rows = [], 0
                    batch.append(job)
                    rows += job.rows
                self._run(batch)

    def _run(self, jobs: list[ShadowJob]) -> None:
        first = jobs[0]
        start = time.perf_counter()
        try:
            inputs = {k: np.concatenate([j.inputs[k] for j in jobs]) if len(jobs) > 1 else first.inputs[k]
                      for k in first.inputs}
            expected = {k: np.concatenate([j.outputs[k] for j in jobs]) if len(jobs) > 1 else first.outputs[k]
                        for k in first.outputs}
            with self._acquire(first.model, first.candidate) as handle:
                outputs = handle.servable.predict(first.signature, inputs, list(first.outputs))
                tolerances = self._tolerances_for(first.model, first.candidate, handle.servable)
            seconds = time.perf_counter() - start
            results = agreement(expected, outputs, [j.rows for j in jobs], tolerances)
        except Exception as exc:  # noqa: BLE001 - a candidate error is a measurement, never a crash
            seconds = time.perf_counter() - start
            log.debug("shadow run of %s version %d failed: %s", first.model, first.candidate, exc)
            for job in jobs:
                job.window.shadow_result(seconds, error=True)
                if self._on_result is not None:
                    self._on_result(job.model, job.candidate, False, 0.0, seconds, True)
            return
        for job, (agree, worst_abs, output) in zip(jobs, results, strict=True):
            job.window.shadow_result(seconds, error=False, agree=agree, worst_abs=worst_abs, output=output)
            if self._on_result is not None:
                self._on_result(job.model, job.candidate, agree, worst_abs, seconds, False)

    def _tolerances_for(self, model: str, version: int, servable: Any) -> dict[str, Tolerance]:
        key = (model, version)
        cached = self._tolerances.get(key)
        if cached is None:
            cached = self._tolerances[key] = tolerances_of(getattr(servable, "path", ""))
        return cached

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._pending = []
            self._cond.notify_all()
