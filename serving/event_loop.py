"""The server's one asyncio event loop, on its own thread, and the bounded executor for model runs.

gRPC (grpc.aio) and REST (uvicorn) both run on this loop: a connection or a waiting request costs
a few objects on the loop, not a thread. What blocks (a model run, a large merge of a batch)
goes to :attr:`ServingLoop.executor`, whose thread count bounds how many run at once; the
batcher (runtime/batching.py) is fed from the loop and resolves futures, so a finished batch
wakes the loop once instead of a thread per request.

The hop to the executor and back costs two thread hand-offs (~0.1-0.3 ms on a busy box): a
quarter of a one-row MLP call, and what made one client at a time slower than the
thread-per-request server this loop replaced. So a short run may stay on the loop:
:meth:`ServingLoop.quiet` says whether nothing else would wait for it (no executor job in flight,
no callback ready), and the servable runs inline only runs it measured to be short
(runtime/servable.py, ``INLINE_RUN_SECONDS``). Under concurrency the loop is never quiet, and runs
go to the executor, overlapping the model with the loop's (de)serialization.

>>> loop = ServingLoop(model_threads=4).start()          # doctest: +SKIP
>>> loop.call(some_coroutine())                           # doctest: +SKIP
>>> loop.stop()                                           # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["ServingLoop"]

T = TypeVar("T")


class ServingLoop:
    """An event loop running on a daemon thread, plus a bounded thread pool for blocking work.

    Thread-safe: :meth:`call` and :meth:`submit` may be used from any thread except the loop's.
    """

    def __init__(self, model_threads: int = 4, name: str = "serving") -> None:
        self.loop = asyncio.new_event_loop()
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, model_threads), thread_name_prefix=f"{name}-model"
        )
        self._name = name
        self._thread: threading.Thread | None = None
        self._stopped = False
        #: run_blocking jobs submitted and not yet finished (changed on the loop only)
        self._jobs = 0

    def start(self) -> ServingLoop:
        if self._thread is None:
            started = threading.Event()
            self.loop.call_soon(started.set)
            self._thread = threading.Thread(target=self._run, name=f"{self._name}-loop", daemon=True)
            self._thread.start()
            started.wait(30)
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._stopped

    def in_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop; returns a thread-safe future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait (from another thread) for its result."""
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError("ServingLoop.call() would deadlock on the loop's own thread")
        return self.submit(coro).result(timeout)

    def run_blocking(self, fn: Callable[..., T], *args: Any) -> Awaitable[T]:
        """From the loop: run ``fn(*args)`` on the executor, awaitable."""
        future = self.loop.run_in_executor(self.executor, fn, *args)
        self._jobs += 1
        future.add_done_callback(self._job_done)
        return future

    def _job_done(self, _future: Any) -> None:
        self._jobs -= 1

    def quiet(self) -> bool:
        """From the loop: nothing else is in progress - no executor job in flight, no callback
        ready to run. A short blocking call made now on the loop delays no other request."""
        # asyncio's ready queue (CPython's BaseEventLoop); a loop without one never counts as quiet
        return self._jobs == 0 and not getattr(self.loop, "_ready", True)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the loop (after whatever shutdown coroutines were awaited) and the executor."""
        if self._stopped:
            return
        self._stopped = True
        if self._thread is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self._thread is None or not self._thread.is_alive():
            self.loop.close()
