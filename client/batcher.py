"""Client-side micro-batching: many concurrent one-row calls become one Predict request.

A web service calling a model makes many small concurrent calls, and per-request overhead then
dominates (and TF Serving's own batching is off unless configured). A batcher collects the calls
for one model/version/signature arriving within ``max_delay_ms`` (or until ``max_batch_size``
rows), sends them as one request, and gives each caller its own rows of the answer::

    batcher = client.batcher("digits", max_batch_size=64, max_delay_ms=2)
    y = batcher.predict(x_row)            # from many threads; await batcher.predict(...) on aio

Only calls whose inputs can be concatenated (same names, dtypes and shape after the first
dimension) merge; others go in their own requests. If a merged request fails with
INVALID_ARGUMENT, each caller's rows are sent again on their own, so only the caller with the
bad input gets the error. Each caller's ``timeout`` holds while its call waits in a batch.

:class:`Batcher` (threads) and :class:`AsyncBatcher` (asyncio) share the grouping, merging and
splitting below; they differ only in how callers wait.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from collections.abc import Mapping
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tfship.client.types import Inputs, ModelRef, Outputs

from tfship.errors import DeadlineExceededError, InvalidArgumentError, ServingError

__all__ = ["Batcher", "AsyncBatcher", "BatcherStats", "merge_key", "merge_inputs", "split_outputs"]

MergeKey = tuple[tuple[str, str, tuple[int, ...]], ...]


def merge_key(inputs: Mapping[str, np.ndarray]) -> MergeKey | None:
    """What calls must share to be concatenated (names, dtypes, shape after dim 0); None if the
    inputs have no common first dimension (scalars, or inputs with different row counts)."""
    rows = {v.shape[0] if v.ndim else None for v in inputs.values()}
    if len(rows) != 1 or None in rows:
        return None
    return tuple(sorted((name, v.dtype.str, tuple(v.shape[1:])) for name, v in inputs.items()))


def rows_of(inputs: Mapping[str, np.ndarray]) -> int:
    return int(next(iter(inputs.values())).shape[0])


def merge_inputs(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """One request's inputs from several calls' (same :func:`merge_key`), rows in call order."""
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def split_outputs(outputs: Mapping[str, np.ndarray], counts: list[int]) -> list[dict[str, np.ndarray]] | None:
    """Each call's rows of a merged answer; None when an output is not one row per input row
    (then the calls cannot be told apart and are sent again one by one)."""
    total = sum(counts)
    if any(v.ndim == 0 or v.shape[0] != total for v in outputs.values()):
        return None
    bounds = np.cumsum([0, *counts]).tolist()
    return [{name: v[start:stop] for name, v in outputs.items()}
            for start, stop in zip(bounds[:-1], bounds[1:], strict=True)]


def _as_result(outputs: dict[str, np.ndarray]) -> Outputs:
    return next(iter(outputs.values())) if len(outputs) == 1 else outputs


def _own_copy(exc: BaseException) -> BaseException:
    """A copy per caller: one exception object raised in several threads would share a traceback."""
    try:
        return copy.copy(exc)
    except Exception:  # noqa: BLE001 - an exception that cannot be copied is raised as it is
        return exc


@dataclass
class BatcherStats:
    """Counts since the batcher was made: ``calls`` to predict, ``requests`` sent for them,
    ``merged`` requests that carried more than one call, ``fallbacks`` merged requests re-sent
    call by call after INVALID_ARGUMENT (or an answer that could not be split)."""

    calls: int = 0
    requests: int = 0
    merged: int = 0
    fallbacks: int = 0


@dataclass
class _Call:
    inputs: dict[str, np.ndarray]
    rows: int
    deadline: float | None
    future: Any  # concurrent.futures.Future (Batcher) or asyncio.Future (AsyncBatcher)

    def remaining(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())


@dataclass
class _Group:
    key: MergeKey
    calls: list[_Call] = field(default_factory=list)
    rows: int = 0
    scheduled: bool = False  # its send is on the way (it may still fill while that waits for a slot)


class _BatcherBase:
    def __init__(self, client: Any, ref: ModelRef, *, max_batch_size: int, max_delay_ms: float,
                 max_concurrent_batches: int) -> None:
        if max_batch_size < 1 or max_delay_ms < 0 or max_concurrent_batches < 1:
            raise InvalidArgumentError(
                f"A batcher needs max_batch_size >= 1, max_delay_ms >= 0 and max_concurrent_batches >= 1; "
                f"got {max_batch_size}, {max_delay_ms}, {max_concurrent_batches}.")
        self.client = client
        self.ref = ref
        self.max_batch_size = max_batch_size
        self.max_delay = max_delay_ms / 1000.0
        self.max_concurrent_batches = max_concurrent_batches
        self.stats = BatcherStats()
        self._open: dict[MergeKey, _Group] = {}

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.ref.describe()} max_batch_size={self.max_batch_size} "
                f"max_delay_ms={self.max_delay * 1000:g}>")

    def _predict_kwargs(self) -> dict[str, Any]:
        return {"version": self.ref.version, "label": self.ref.label, "signature": self.ref.signature}

    def _join(self, key: MergeKey, call: _Call) -> tuple[_Group, bool, _Group | None]:
        """Add ``call`` to the open group for ``key``: ``(group, opened_it, full_group_to_send_now)``."""
        group = self._open.get(key)
        full: _Group | None = None
        if group is not None and group.rows + call.rows > self.max_batch_size:
            full = self._open.pop(key)  # no room: that one goes now, this call opens the next
            group = None
        opened = group is None
        if group is None:
            group = self._open[key] = _Group(key)
        group.calls.append(call)
        group.rows += call.rows
        if group.rows >= self.max_batch_size:
            self._open.pop(key, None)
            full = group
        return group, opened, full

    def _take(self, group: _Group) -> None:
        """No more calls join ``group`` (it is being sent)."""
        if self._open.get(group.key) is group:
            del self._open[group.key]

    @staticmethod
    def _request_timeout(calls: list[_Call]) -> float | None:
        # Long enough for the most patient caller; each caller's own deadline is enforced where it waits.
        remaining = [c.remaining() for c in calls]
        return None if None in remaining else max(r for r in remaining if r is not None)

    def _deadline_error(self, timeout: float | None) -> ServingError:
        return DeadlineExceededError(
            f"No answer within {timeout} s for a batched call to {self.ref.describe()}.", model=self.ref.name,
            hint="Raise timeout=, or lower max_delay_ms / max_batch_size if calls wait too long in a batch.")


class Batcher(_BatcherBase):
    """Merges concurrent :meth:`predict` calls from many threads; make one with
    :meth:`tfship.client.Client.batcher`. Close it (or use ``with``) to stop its worker threads."""

    def __init__(self, client: Any, ref: ModelRef, *, max_batch_size: int = 64, max_delay_ms: float = 2.0,
                 max_concurrent_batches: int = 4) -> None:
        super().__init__(client, ref, max_batch_size=max_batch_size, max_delay_ms=max_delay_ms,
                         max_concurrent_batches=max_concurrent_batches)
        self._lock = threading.Lock()
        self._full: dict[int, threading.Event] = {}
        self._pool = ThreadPoolExecutor(max_concurrent_batches, thread_name_prefix="tfship-batcher")

    def predict(self, inputs: Inputs, *, timeout: float | None = None) -> Outputs:
        """This call's outputs (as :meth:`tfship.client.Client.predict` returns them), sent with
        the other calls pending for the same model; ``timeout`` (default: the client's) covers
        the wait in the batch too."""
        named = self.client._named_inputs(self.ref, inputs)
        timeout = self.client._timeout(timeout)
        key = merge_key(named)
        with self._lock:
            self.stats.calls += 1
        if key is None or rows_of(named) >= self.max_batch_size:
            with self._lock:
                self.stats.requests += 1
            return self.client.predict(self.ref.name, named, timeout=timeout, **self._predict_kwargs())
        call = _Call(named, rows_of(named), None if timeout is None else time.monotonic() + timeout, Future())
        with self._lock:
            group, opened, full = self._join(key, call)
            if opened:
                self._full[id(group)] = threading.Event()
            if full is not None:
                self._full[id(full)].set()
        if opened:
            # This caller keeps time for its group: send after max_delay, as soon as it is full, or
            # early if this caller's own deadline comes first (it may not wait longer for company).
            remaining = call.remaining()
            self._full[id(group)].wait(self.max_delay if remaining is None else min(self.max_delay, remaining))
            if call.remaining() == 0:
                call.future.cancel()  # out of time: the others go now, without this call's rows
            self._pool.submit(self._send, group)
        try:
            return _as_result(call.future.result(timeout=call.remaining()))
        except (FutureTimeout, CancelledError):
            call.future.cancel()  # still waiting in a group: it is left out of the request
            raise self._deadline_error(timeout) from None

    def _send(self, group: _Group) -> None:
        with self._lock:
            self._take(group)
            self._full.pop(id(group), None)
        calls = [c for c in group.calls if c.future.set_running_or_notify_cancel()]
        if not calls:
            return
        with self._lock:
            self.stats.requests += 1
            self.stats.merged += len(calls) > 1
        try:
            prediction = self.client.predict_detailed(
                self.ref.name, merge_inputs([c.inputs for c in calls]), timeout=self._request_timeout(calls),
                **self._predict_kwargs())
        except Exception as exc:  # noqa: BLE001 - handed to the callers
            if isinstance(exc, InvalidArgumentError) and len(calls) > 1:
                self._one_by_one(calls)  # whose input was it? each call alone says
            else:
                for c in calls:
                    c.future.set_exception(_own_copy(exc) if len(calls) > 1 else exc)
            return
        parts = split_outputs(prediction.outputs, [c.rows for c in calls]) if len(calls) > 1 else [
            prediction.outputs]
        if parts is None:
            self._one_by_one(calls)
            return
        for c, part in zip(calls, parts, strict=True):
            c.future.set_result(part)

    def _one_by_one(self, calls: list[_Call]) -> None:
        with self._lock:
            self.stats.fallbacks += 1
            self.stats.requests += len(calls)
        for c in calls:
            try:
                c.future.set_result(self.client.predict_detailed(
                    self.ref.name, c.inputs, timeout=c.remaining(), **self._predict_kwargs()).outputs)
            except Exception as exc:  # noqa: BLE001 - this caller's own error
                c.future.set_exception(exc)

    def close(self) -> None:
        """Stop the worker threads once the batches already sent are answered."""
        self._pool.shutdown(wait=True)

    def __enter__(self) -> Batcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncBatcher(_BatcherBase):
    """Merges concurrent ``await predict(...)`` calls from many coroutines; make one with
    :meth:`tfship.client.aio.AsyncClient.batcher`. Lives on the event loop of its first call."""

    def __init__(self, client: Any, ref: ModelRef, *, max_batch_size: int = 64, max_delay_ms: float = 2.0,
                 max_concurrent_batches: int = 4) -> None:
        super().__init__(client, ref, max_batch_size=max_batch_size, max_delay_ms=max_delay_ms,
                         max_concurrent_batches=max_concurrent_batches)
        self._slots: asyncio.Semaphore | None = None
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def predict(self, inputs: Inputs, *, timeout: float | None = None) -> Outputs:
        """This call's outputs, sent with the other calls pending for the same model; ``timeout``
        (default: the client's) covers the wait in the batch too. Cancelling the call leaves its
        rows out of a batch not yet sent."""
        named = await self.client._named_inputs(self.ref, inputs)
        timeout = self.client._timeout(timeout)
        key = merge_key(named)
        self.stats.calls += 1
        if key is None or rows_of(named) >= self.max_batch_size:
            self.stats.requests += 1
            return await self.client.predict(self.ref.name, named, timeout=timeout, **self._predict_kwargs())
        loop = asyncio.get_running_loop()
        call = _Call(named, rows_of(named), None if timeout is None else time.monotonic() + timeout,
                     loop.create_future())
        group, opened, full = self._join(key, call)
        if opened and full is not group:
            # A timer, not the first caller, keeps time: a cancelled caller must not strand its group.
            self._timers[id(group)] = loop.call_later(self.max_delay, self._flush, group)
        if full is not None:
            self._flush(full)
        try:
            return _as_result(await asyncio.wait_for(asyncio.shield(call.future), call.remaining()))
        except asyncio.TimeoutError:
            raise self._deadline_error(timeout) from None
        finally:
            call.future.cancel()  # no-op once answered; otherwise its rows are left out

    def _flush(self, group: _Group) -> None:
        timer = self._timers.pop(id(group), None)
        if timer is not None:
            timer.cancel()
        if group.scheduled:
            return
        group.scheduled = True
        task = asyncio.ensure_future(self._send(group))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, group: _Group) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrent_batches)
        async with self._slots:  # while no slot is free the group stays open and keeps filling
            self._take(group)
            calls = [c for c in group.calls if not c.future.done()]
            if not calls:
                return
            self.stats.requests += 1
            self.stats.merged += len(calls) > 1
            try:
                prediction = await self.client.predict_detailed(
                    self.ref.name, merge_inputs([c.inputs for c in calls]),
                    timeout=self._request_timeout(calls), **self._predict_kwargs())
            except Exception as exc:  # noqa: BLE001 - handed to the callers
                if not (isinstance(exc, InvalidArgumentError) and len(calls) > 1):
                    for c in calls:
                        if not c.future.done():
                            c.future.set_exception(_own_copy(exc) if len(calls) > 1 else exc)
                    return
                prediction = None
        parts = None if prediction is None else (
            split_outputs(prediction.outputs, [c.rows for c in calls]) if len(calls) > 1 else [prediction.outputs])
        if parts is None:
            await self._one_by_one(calls)  # whose input was it? each call alone says
            return
        for c, part in zip(calls, parts, strict=True):
            if not c.future.done():
                c.future.set_result(part)

    async def _one_by_one(self, calls: list[_Call]) -> None:
        self.stats.fallbacks += 1
        self.stats.requests += len(calls)

        async def alone(c: _Call) -> None:
            try:
                outputs = (await self.client.predict_detailed(
                    self.ref.name, c.inputs, timeout=c.remaining(), **self._predict_kwargs())).outputs
            except Exception as exc:  # noqa: BLE001 - this caller's own error
                if not c.future.done():
                    c.future.set_exception(exc)
                return
            if not c.future.done():
                c.future.set_result(outputs)

        await asyncio.gather(*(alone(c) for c in calls))

    async def close(self) -> None:
        """Send what is pending and wait for the batches in flight."""
        for group in list(self._open.values()):
            self._flush(group)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> AsyncBatcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
