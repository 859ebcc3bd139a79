"""Large inputs in batches: split along axis 0, run requests concurrently, keep order, reassemble.

>>> y = predict_batches(client, "digits", x_test, batch_size=256, concurrency=4)  # doctest: +SKIP

:func:`predict_batches` (threads) and :func:`predict_batches_async` (asyncio) share the splitting
and reassembly below; they differ only in how requests wait.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from tfship.errors import InvalidArgumentError
from tfship.wire.tensor import as_ndarray

__all__ = [
    "predict_batches", "predict_batches_async", "iter_batch_results", "batch_bounds", "split_rows", "concat_outputs",
]

Progress = Callable[[int, int], None]


def _as_inputs(inputs: Any) -> tuple[dict[str, np.ndarray] | np.ndarray, int]:
    if isinstance(inputs, Mapping):
        arrays = {k: v if isinstance(v, np.ndarray) else as_ndarray(v) for k, v in inputs.items()}
        rows = {k: (v.shape[0] if v.ndim else None) for k, v in arrays.items()}
        sizes = set(rows.values())
        if len(sizes) != 1 or None in sizes:
            raise InvalidArgumentError(
                f"All inputs must have the same number of rows (dim 0) to be batched; got {rows}.")
        return arrays, sizes.pop()  # type: ignore[return-value]
    array = inputs if isinstance(inputs, np.ndarray) else as_ndarray(inputs)
    if array.ndim == 0:
        raise InvalidArgumentError("A scalar input cannot be split into batches; give it a batch dimension.")
    return array, array.shape[0]


def batch_bounds(rows: int, batch_size: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``rows`` rows in batches of ``batch_size``."""
    if batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be >= 1, got {batch_size}.")
    return [(start, min(start + batch_size, rows)) for start in range(0, rows, batch_size)]


def split_rows(inputs: dict[str, np.ndarray] | np.ndarray, start: int, stop: int) -> Any:
    if isinstance(inputs, dict):
        return {k: v[start:stop] for k, v in inputs.items()}
    return inputs[start:stop]


def iter_batch_results(client: Any, model: str, inputs: Any, *, batch_size: int = 256,
                       concurrency: int = 4, skip: Sequence[int] = (), ordered: bool = True,
                       **predict_kwargs: Any) -> Iterator[tuple[int, int, int, Any]]:
    """Yield ``(batch_index, start, stop, outputs)``, in input order when ``ordered``.

    At most ``2 * concurrency`` requests are queued, so memory stays bounded for huge inputs.
    Batches whose index is in ``skip`` are not sent (used to resume a job). The first error
    cancels what is still queued and is raised.
    """
    arrays, rows = _as_inputs(inputs)
    skipped = set(skip)
    todo = [(i, b) for i, b in enumerate(batch_bounds(rows, batch_size)) if i not in skipped]
    if concurrency < 1:
        raise InvalidArgumentError(f"concurrency must be >= 1, got {concurrency}.")

    def run(start: int, stop: int) -> Any:
        return client.predict(model, split_rows(arrays, start, stop), **predict_kwargs)

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="tfship-batch") as pool:
        pending: list[tuple[int, int, int, Future[Any]]] = []
        queue = iter(todo)
        try:
            while True:
                while len(pending) < 2 * concurrency:
                    item = next(queue, None)
                    if item is None:
                        break
                    index, (start, stop) = item
                    pending.append((index, start, stop, pool.submit(run, start, stop)))
                if not pending:
                    return
                if ordered:
                    index, start, stop, future = pending.pop(0)
                else:
                    done = next((p for p in pending if p[3].done()), pending[0])
                    pending.remove(done)
                    index, start, stop, future = done
                yield index, start, stop, future.result()
        finally:
            for *_, future in pending:
                future.cancel()


def predict_batches(client: Any, model: str, inputs: Any, *, batch_size: int = 256,
                    concurrency: int = 4, progress: bool | Progress | None = None,
                    **predict_kwargs: Any) -> Any:
    """Predict ``inputs`` (array or dict of arrays sharing dim 0) in batches; same result as one call.

    ``progress``: True for a tqdm bar (rows/s, ETA), or a callable ``(rows_done, rows_total)``.
    Outputs are concatenated in input order: one array, or a dict for several outputs.
    """
    _, rows = _as_inputs(inputs)
    bar = None
    if progress is True:
        from tqdm import tqdm

        bar = tqdm(total=rows, unit="rows", desc=f"predict {model}", smoothing=0.1)
    parts: list[Any] = []
    done = 0
    try:
        for _, start, stop, outputs in iter_batch_results(
                client, model, inputs, batch_size=batch_size, concurrency=concurrency,
                **predict_kwargs):
            parts.append(outputs)
            done += stop - start
            if bar is not None:
                bar.update(stop - start)
            elif callable(progress):
                progress(done, rows)
    finally:
        if bar is not None:
            bar.close()
    return concat_outputs(parts)


async def predict_batches_async(client: Any, model: str, inputs: Any, *, batch_size: int = 256,
                                concurrency: int = 4, progress: Any = None, **predict_kwargs: Any) -> Any:
    """:func:`predict_batches` for the asyncio client: ``concurrency`` requests in flight on the
    event loop, order kept. The first error cancels the batches still running and is raised."""
    import asyncio  # here, so the blocking client's batches do not load it

    arrays, rows = _as_inputs(inputs)
    bounds = batch_bounds(rows, batch_size)
    if concurrency < 1:
        raise InvalidArgumentError(f"concurrency must be >= 1, got {concurrency}.")
    bar = None
    if progress is True:
        from tqdm import tqdm

        bar = tqdm(total=rows, unit="rows", desc=f"predict {model}", smoothing=0.1)
    slots = asyncio.Semaphore(concurrency)
    done = 0

    async def run(start: int, stop: int) -> Any:
        nonlocal done
        async with slots:
            out = await client.predict(model, split_rows(arrays, start, stop), **predict_kwargs)
        done += stop - start
        if bar is not None:
            bar.update(stop - start)
        elif callable(progress):
            progress(done, rows)
        return out

    tasks = [asyncio.ensure_future(run(start, stop)) for start, stop in bounds]
    try:
        parts = await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        if bar is not None:
            bar.close()
    return concat_outputs(list(parts))


def concat_outputs(parts: list[Any]) -> Any:
    """Concatenate per-batch outputs (arrays or dicts of arrays) along axis 0."""
    if not parts:
        raise InvalidArgumentError("No rows to predict: the input has 0 rows.")
    if isinstance(parts[0], dict):
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return np.concatenate(parts)
