"""Server-side batching (``--enable_batching``): merge concurrent runs into one session run.

Mirrors TF Serving's batching session on a shared batch scheduler (TF Serving compat spec §7): one queue per
signature (feed names, fetch names, dtypes and non-batch dims); tasks join the queue's open batch
up to ``max_batch_size`` rows; a batch becomes runnable when full, when a newer batch was started
behind it, or ``batch_timeout_micros`` after its first task arrived; at most ``num_batch_threads``
batches run at once (on the batcher's own threads); at most
``max_enqueued_batches`` batches wait per queue, beyond that a task is rejected with UNAVAILABLE.
Inputs are concatenated along dim 0 (optionally padded to ``allowed_batch_sizes`` with copies of
the first row, and ragged inner dims padded when ``pad_variable_length_inputs``), outputs are split
back to the callers, so every caller gets what an unbatched run would have returned.

A run's ``timeout`` is a deadline from the moment it enters :meth:`Batcher.run`: it covers the
wait for a batch and for an execution slot, not only the session run (as TF's batching session
counts a task's timeout from its enqueue time). A task whose deadline passes while it waits leaves
its batch and fails with DEADLINE_EXCEEDED;
the merged run's own timeout is the latest deadline among the tasks still in it.

Scheduling runs on an event loop (the server's, see serving/event_loop.py): a request waiting for
its batch is a future, not a blocked thread, and a finished batch wakes the loop once.

The bypass (:meth:`Batcher.bypasses`). A task the scheduler would run at once as a batch of its
own skips the queue and runs as an unbatched call does (on the loop itself when short and the loop
is quiet, else one executor hop; see runtime/servable.py): a batch thread is free and either

* the task alone fills a batch (``size >= max_batch_size``, or ``max_execution_batch_size`` with
  large batch splitting): nothing could join it, and no padding applies; or
* ``batch_timeout_micros`` is 0, no batch is queued or running, and the loop is quiet (no request
  is about to join): the scheduler would start it at once, alone.

So the bypass never changes which rows run together, how many batches run at once (a bypassed run
holds a batch thread's slot), padding or timeouts; it only removes the queue's and the batch
thread's hand-offs from a batch of one task, so one client is served as fast with batching on
as off. The batch-size metric counts it as a batch of its size.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tfship.errors import (
    DeadlineExceededError,
    InternalError,
    InvalidArgumentError,
    ServingError,
    UnavailableError,
)

if TYPE_CHECKING:
    from tfship.serving.config.batching import BatchingParameters

    from ..event_loop import ServingLoop

__all__ = ["Batcher", "validate_batching_parameters"]

RunFn = Callable[[Mapping[str, np.ndarray], Sequence[str], "float | None"], list[np.ndarray]]


def validate_batching_parameters(params: BatchingParameters) -> None:
    """Reject parameters TF Serving refuses at load time (INVALID_ARGUMENT)."""
    if params.max_batch_size <= 0:
        raise InvalidArgumentError(
            f"max_batch_size must be positive; was {params.max_batch_size}"
        )
    if params.max_enqueued_batches <= 0:
        raise InvalidArgumentError(
            f"max_enqueued_batches must be positive; was {params.max_enqueued_batches}"
        )
    if params.num_batch_threads <= 0:
        raise InvalidArgumentError(
            f"num_batch_threads must be positive; was {params.num_batch_threads}"
        )
    last = 0
    sizes = list(params.allowed_batch_sizes)
    limit = _execution_limit(params)
    for i, size in enumerate(sizes):
        if size <= last:
            raise InvalidArgumentError(
                "allowed_batch_sizes entries must be monotonically increasing"
            )
        if i == len(sizes) - 1 and size != limit:
            if params.enable_large_batch_splitting:
                raise InvalidArgumentError(
                    "final entry in allowed_batch_sizes must equal max_execution_batch_size "
                    "when enable_large_batch_splitting is True"
                )
            raise InvalidArgumentError(
                "final entry in allowed_batch_sizes must equal max_batch_size when "
                "enable_large_batch_splitting is False"
            )
        last = size


def _execution_limit(params: BatchingParameters) -> int:
    if params.enable_large_batch_splitting and params.max_execution_batch_size:
        return params.max_execution_batch_size
    return params.max_batch_size


_QUEUE_DEADLINE = (
    "Deadline exceeded while the request waited in the batching queue (for its batch or an "
    "execution slot); give the request a longer deadline (--rest_api_timeout_in_ms for REST, "
    "the client deadline for gRPC) or reduce the load on this model"
)


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def _expired(deadline: float | None, now: float) -> bool:
    return deadline is not None and deadline <= now


@dataclass(eq=False)
class _Task:
    feeds: Mapping[str, np.ndarray]
    size: int
    deadline: float | None  # time.monotonic() seconds (= the loop's clock); None = no deadline
    future: asyncio.Future[list[np.ndarray]]
    timer: asyncio.TimerHandle | None = None


@dataclass(eq=False)
class _Batch:
    key: tuple[Any, ...]
    fetches: tuple[str, ...]
    tasks: list[_Task] = field(default_factory=list)
    size: int = 0
    closed: bool = False  # no more tasks may join: full, or a newer batch was opened behind it
    started: bool = False  # handed to a batch thread: its tasks can no longer leave it
    opened: float = field(default_factory=time.monotonic)
    sized: int = 0  # its size when the scheduler last held it back for a busy loop


class Batcher:
    """Batches concurrent calls of one servable on an event loop; :meth:`close` to stop.

    Callers on the loop ``await`` :meth:`submit`; other threads call :meth:`run`, which submits
    to the loop and waits. All scheduling happens on the loop (no lock, no thread waits for its
    batch): a runnable batch goes to one of ``num_batch_threads`` batch threads, and when it
    finishes the loop resolves its callers' futures. Without ``serving_loop`` the batcher runs
    its own loop thread (a servable used outside a server, e.g. in tests).
    """

    def __init__(
        self,
        run_fn: RunFn,
        params: BatchingParameters,
        on_batch: Callable[[int], None] | None = None,
        serving_loop: ServingLoop | None = None,
    ) -> None:
        from ..event_loop import ServingLoop

        validate_batching_parameters(params)
        self._run_fn = run_fn
        self._params = params
        self._on_batch = on_batch
        self._max = _execution_limit(params)
        self._timeout = params.batch_timeout_micros / 1e6
        self._own_loop = serving_loop is None
        self._serving_loop = serving_loop if serving_loop is not None else ServingLoop(1, "batcher").start()
        self._loop = self._serving_loop.loop
        # its own threads: a batch never waits for a thread a blocked caller holds
        self._threads = concurrent.futures.ThreadPoolExecutor(
            params.num_batch_threads, thread_name_prefix="batch"
        )
        self._queues: dict[tuple[Any, ...], list[_Batch]] = {}
        self._running = 0
        self._schedule_pending = False
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    # ------------------------------------------------------------------ callers

    def run(
        self,
        feeds: Mapping[str, np.ndarray],
        fetches: Sequence[str],
        timeout: float | None = None,
    ) -> list[np.ndarray]:
        """:meth:`submit` from a thread other than the loop's: blocks until the batch ran."""
        return self._serving_loop.call(self.submit(feeds, fetches, timeout))

    async def submit(
        self,
        feeds: Mapping[str, np.ndarray],
        fetches: Sequence[str],
        timeout: float | None = None,
        alone: Callable[[], Awaitable[list[np.ndarray]]] | None = None,
    ) -> list[np.ndarray]:
        """Run ``fetches`` for ``feeds`` as part of a batch (call on the batcher's loop).

        ``timeout`` (seconds from now) bounds the whole call, queueing included; when it passes
        the call raises DeadlineExceededError and its rows are not run (or their result is
        dropped if the batch is already running). ``alone()``, if given, runs the task by itself
        (unbatched, with ``timeout``): the batcher awaits it instead of queueing a task that
        :meth:`bypasses` the queue.
        """
        if asyncio.get_running_loop() is not self._loop:
            # a caller on another loop (a servable loaded without the server's loop): hand over
            return await asyncio.wrap_future(
                self._serving_loop.submit(self.submit(feeds, fetches, timeout))
            )
        deadline = None if timeout is None else time.monotonic() + timeout
        if not feeds:
            raise InvalidArgumentError(
                "Batching session Run() must have at least one input tensor"
            )
        feeds = {name: np.asarray(value) for name, value in feeds.items()}
        size = -1
        for value in feeds.values():
            if value.ndim == 0:
                raise InvalidArgumentError(
                    "Batching Run() input tensors must have at least one dimension "
                    "(send a batch dimension, e.g. [[...]] instead of a scalar)"
                )
            if size not in (-1, value.shape[0]):
                raise InvalidArgumentError(
                    "Batching Run() input tensors must have equal 0th-dimension size"
                )
            size = value.shape[0]
        key = self._key(feeds, fetches)
        if alone is not None and size <= self._max and self.bypasses(size):
            return await self._run_alone(size, alone)
        if size <= self._max:
            return await self._submit_task(feeds, key, tuple(fetches), size, deadline)
        if not self._params.enable_large_batch_splitting:
            raise InvalidArgumentError(
                f"Task size {size} is larger than maximum input batch size {self._max}"
            )
        parts = await asyncio.gather(*(
            self._submit_task({n: v[start : start + self._max] for n, v in feeds.items()}, key,
                              tuple(fetches), min(self._max, size - start), deadline)
            for start in range(0, size, self._max)
        ))
        return [np.concatenate([p[i] for p in parts]) for i in range(len(fetches))]

    async def _submit_task(
        self,
        feeds: Mapping[str, np.ndarray],
        key: tuple[Any, ...],
        fetches: tuple[str, ...],
        size: int,
        deadline: float | None,
    ) -> list[np.ndarray]:
        if _expired(deadline, time.monotonic()):
            raise DeadlineExceededError(_QUEUE_DEADLINE)
        task = _Task(feeds=feeds, size=size, deadline=deadline, future=self._loop.create_future())
        batch = self._enqueue(task, key, fetches)
        if deadline is not None:
            task.timer = self._loop.call_at(deadline, self._expire, batch, task)
        if batch.closed:
            self._schedule()
        elif not self._schedule_pending:
            # at the end of this loop iteration: every request that arrived with this one
            # (decoded in the same iteration) joins the batch before it can start
            self._schedule_pending = True
            self._loop.call_soon(self._schedule)
        try:
            return await task.future
        except asyncio.CancelledError:  # the caller went away (e.g. the RPC was cancelled)
            self._leave(batch, task)
            raise
        finally:
            if task.timer is not None:
                task.timer.cancel()

    def bypasses(self, size: int) -> bool:
        """A task of ``size`` rows skips the queue and runs by itself, now (see module docs):
        a batch thread is free and either the task fills a batch alone, or nothing is queued,
        running or about to arrive that it could be merged with. Call on the batcher's loop."""
        if self._closed or self._running >= self._params.num_batch_threads:
            return False
        if size >= self._max:
            return True
        return (self._timeout == 0 and self._running == 0 and not self._queues
                and self._serving_loop.quiet())

    async def _run_alone(self, size: int, alone: Callable[[], Awaitable[list[np.ndarray]]]) -> list[np.ndarray]:
        # it holds a batch thread's slot (num_batch_threads bounds runs, bypassed or not) and
        # counts as a batch of its size, as it would have run through the queue
        self._running += 1
        try:
            if self._on_batch is not None:
                self._on_batch(size)
            return await alone()
        finally:
            self._running -= 1
            self._schedule()

    def _key(self, feeds: Mapping[str, np.ndarray], fetches: Sequence[str]) -> tuple[Any, ...]:
        shapes: tuple[tuple[Any, ...], ...]
        if self._params.pad_variable_length_inputs:
            shapes = tuple((n, v.dtype.str, v.ndim) for n, v in feeds.items())
        else:
            shapes = tuple((n, v.dtype.str, v.shape[1:]) for n, v in feeds.items())
        return (tuple(sorted(shapes)), tuple(fetches))

    # ------------------------------------------------------------------ queues (on the loop)

    def _enqueue(self, task: _Task, key: tuple[Any, ...], fetches: tuple[str, ...]) -> _Batch:
        """Add ``task`` to its queue's open batch (or a new one)."""
        if self._closed:
            raise UnavailableError("The batch scheduler is shut down (servable unloading).")
        batches = self._queues.setdefault(key, [])
        batch = batches[-1] if batches and not batches[-1].closed else None
        if batch is None or batch.size + task.size > self._params.max_batch_size:
            if len(batches) >= self._params.max_enqueued_batches:
                raise UnavailableError(
                    "The batch scheduling queue to which this task was submitted is full"
                )
            if batch is not None:
                batch.closed = True
            batch = _Batch(key=key, fetches=fetches)
            batches.append(batch)
        batch.tasks.append(task)
        batch.size += task.size
        if batch.size >= self._params.max_batch_size:
            batch.closed = True
        return batch

    def _unqueue(self, batch: _Batch) -> None:
        batch.closed = True
        batches = self._queues.get(batch.key)
        if batches is not None and batch in batches:
            batches.remove(batch)
            if not batches:
                del self._queues[batch.key]

    def _leave(self, batch: _Batch, task: _Task) -> bool:
        """Take ``task`` out of its batch if that has not started; False if it is running."""
        if batch.started:
            return False
        if task in batch.tasks:
            batch.tasks.remove(task)
            batch.size -= task.size
            if not batch.tasks:
                self._unqueue(batch)
        return True

    def _expire(self, batch: _Batch, task: _Task) -> None:
        """``task``'s deadline passed: fail it; it leaves its batch unless that is running."""
        if task.future.done():
            return
        queued = self._leave(batch, task)
        # the rows of a task abandoned mid-run are still computed, but nobody reads them
        task.future.set_exception(DeadlineExceededError(_QUEUE_DEADLINE if queued else "Deadline Exceeded"))

    def _schedule(self) -> None:
        """Start runnable batches while batch threads are free (oldest batch first)."""
        self._schedule_pending = False
        while self._running < self._params.num_batch_threads and self._queues:
            now = time.monotonic()
            heads = sorted((batches[0] for batches in self._queues.values()), key=lambda b: b.opened)
            runnable = [b for b in heads if b.closed or self._due(b, now)]
            if not runnable:
                self._wake_at(heads[0].opened + self._timeout)
                return
            batch = runnable[0]
            if not batch.closed and batch.size > batch.sized and self._loop_busy():
                # Requests the loop has admitted but not yet decoded would join this batch: wait
                # for them (one more loop iteration) as long as the batch keeps growing. When the
                # front end, not the model, is the bottleneck, this is what makes batches form
                # (cnn, 16 one-row gRPC clients: ~1.4 rows per batch without it); an idle loop
                # starts a batch at once, so a lone client waits for nothing.
                batch.sized = batch.size
                self._schedule_pending = True
                self._loop.call_soon(self._schedule)
                return
            self._start(batch, now)

    def _due(self, batch: _Batch, now: float) -> bool:
        """An underfull batch may start: its timeout passed, and with a zero timeout only while
        no batch runs. Rows arriving during a run then join the next batch instead of each
        starting a run of their own on another thread (several rows per batch instead of about
        one; README, "Server benchmark"); a full batch still starts on any free thread."""
        if now - batch.opened < self._timeout:
            return False
        return self._timeout > 0 or self._running == 0

    def _loop_busy(self) -> bool:
        # asyncio's ready queue: callbacks due in this very iteration (CPython's BaseEventLoop;
        # a loop without it counts as idle, which only means smaller batches)
        return bool(getattr(self._loop, "_ready", None))

    def _wake_at(self, when: float) -> None:
        if self._timer is not None:
            if self._timer.when() <= when:
                return
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._schedule()

    def _start(self, batch: _Batch, now: float) -> None:
        self._unqueue(batch)
        batch.started = True
        live = []
        for task in batch.tasks:
            if task.future.done():
                continue
            if _expired(task.deadline, now):  # its timer has not fired yet
                task.future.set_exception(DeadlineExceededError(_QUEUE_DEADLINE))
                continue
            live.append(task)
        batch.tasks, batch.size = live, sum(t.size for t in live)
        if not live:
            return
        self._running += 1
        done = self._loop.run_in_executor(self._threads, self._execute, batch)
        done.add_done_callback(functools.partial(self._finished, batch))

    def _finished(self, batch: _Batch, done: asyncio.Future[list[list[np.ndarray]]]) -> None:
        self._running -= 1
        error = done.exception()
        for i, task in enumerate(batch.tasks):
            if task.future.done():
                continue
            if error is not None:
                task.future.set_exception(error)
            else:
                task.future.set_result(done.result()[i])
        self._schedule()

    # ------------------------------------------------------------------ execution (batch threads)

    def _execute(self, batch: _Batch) -> list[list[np.ndarray]]:
        tasks = batch.tasks
        try:
            if self._on_batch is not None:
                self._on_batch(batch.size)
            if len(tasks) == 1 and not self._params.allowed_batch_sizes:
                return [self._run_fn(tasks[0].feeds, batch.fetches, _remaining(tasks[0].deadline))]
            return self._run_merged(batch)
        except ServingError:
            raise
        except Exception as exc:  # never leave a caller waiting forever
            raise InternalError(f"Batched run failed: {exc!r}") from exc

    def _run_merged(self, batch: _Batch) -> list[list[np.ndarray]]:
        tasks = batch.tasks
        padded = self._padded_size(batch.size)
        merged: dict[str, np.ndarray] = {}
        for name in tasks[0].feeds:
            parts = [task.feeds[name] for task in tasks]
            if self._params.pad_variable_length_inputs:
                parts = _pad_inner_dims(parts)
            if padded > batch.size:
                first = parts[0][:1]
                parts.append(np.repeat(first, padded - batch.size, axis=0))
            merged[name] = np.concatenate(parts, axis=0)
        deadlines = [task.deadline for task in tasks]
        latest = None if any(d is None for d in deadlines) else max(deadlines)  # type: ignore[type-var]
        outputs = self._run_fn(merged, batch.fetches, _remaining(latest))
        for name, output in zip(batch.fetches, outputs, strict=True):
            if output.ndim == 0 or output.shape[0] != padded:
                raise InternalError(
                    f"Batched output tensor's 0th dimension does not equal the sum of the 0th "
                    f"dimension sizes of the input tensors ({name}: {output.shape} vs {padded} "
                    "rows); this model cannot be batched, serve it without --enable_batching."
                )
        results: list[list[np.ndarray]] = []
        offset = 0
        for task in tasks:
            results.append([output[offset : offset + task.size] for output in outputs])
            offset += task.size
        return results

    def _padded_size(self, size: int) -> int:
        for allowed in self._params.allowed_batch_sizes:
            if allowed >= size:
                return allowed
        return size

    # ------------------------------------------------------------------ state, shutdown

    def num_enqueued_tasks(self) -> int:
        """Tasks waiting in queues (their batch not yet running); for metrics and tests."""
        if self._serving_loop.in_loop_thread() or not self._serving_loop.running:
            return self._count_enqueued()

        async def count() -> int:
            return self._count_enqueued()

        return self._serving_loop.call(count())

    def _count_enqueued(self) -> int:
        return sum(len(b.tasks) for batches in self._queues.values() for b in batches)

    def close(self) -> None:
        """Stop batching: new tasks and tasks still waiting fail with UNAVAILABLE."""
        if self._serving_loop.running and not self._serving_loop.in_loop_thread():
            async def close() -> None:
                self._close()

            self._serving_loop.call(close())
        else:
            self._close()
        self._threads.shutdown(wait=False)
        if self._own_loop:
            self._serving_loop.stop()

    def _close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        error = UnavailableError("The batch scheduler is shut down (servable unloading).")
        for batches in list(self._queues.values()):
            for batch in batches:
                for task in batch.tasks:
                    if not task.future.done():
                        task.future.set_exception(error)
        self._queues.clear()


def _pad_inner_dims(parts: list[np.ndarray]) -> list[np.ndarray]:
    """Pad dims >= 1 of each part to the largest size, with the part's first element (as TF)."""
    target = tuple(max(p.shape[d] for p in parts) for d in range(1, parts[0].ndim))
    out = []
    for part in parts:
        widths = [(0, 0)] + [(0, t - s) for s, t in zip(part.shape[1:], target, strict=True)]
        if any(w for _, w in widths) and part.size:
            fill = part.reshape(-1)[0]
            padded = np.empty((part.shape[0], *target), dtype=part.dtype)
            padded[...] = fill
            padded[tuple(slice(0, s) for s in part.shape)] = part
            part = padded
        out.append(part)
    return out
