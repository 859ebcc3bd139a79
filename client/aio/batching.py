"""``await client.predict_batches(...)``: large inputs in ordered batches, ``concurrency`` in flight.

The splitting and reassembly are :mod:`tfship.client.batching`'s; only the waiting is asyncio.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tfship.client.batching import _as_inputs, batch_bounds, concat_outputs, split_rows

from tfship.errors import InvalidArgumentError

__all__ = ["predict_batches"]


async def predict_batches(client: Any, model: str, inputs: Any, *, batch_size: int = 256,
                          concurrency: int = 4, progress: Any = None, **predict_kwargs: Any) -> Any:
    """Predict ``inputs`` (array or dict of arrays sharing dim 0) in batches; same result as one call.

    ``progress``: True for a tqdm bar, or a callable ``(rows_done, rows_total)``. The first error
    cancels the batches still running and is raised.
    """
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
