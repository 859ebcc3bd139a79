#!/usr/bin/env python3
"""What the loop -> executor -> loop round trip costs one request at a time (issue 19).

Calls ``Servable.predict_async`` on a ServingLoop one call at a time, in-process (no transport, so
the box's network and client noise stay out), in alternating blocks:

* batching off: a short run inline on the quiet loop vs forced through the executor;
* batching on (``max_batch_size 1024``, ``batch_timeout_micros 0``): a lone task bypassing the
  queue vs forced through the queue and a batch thread.

Prints the median microseconds per call of each side over ``--blocks`` blocks of ``--calls``.

    python bench/loop_hops.py --model /path/to/saved_model_half_plus_two_cpu/00000123
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = Path(os.environ.get("TFSHIP_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--model", type=Path,
                        default=shared / "testdata" / "tf-serving" / "saved_model_half_plus_two_cpu" / "00000123",
                        help="a SavedModel version dir whose serving_default takes x: float32 [batch, 1] "
                             "(default: TF Serving's half_plus_two in ../shared or $TFSHIP_SHARED_DIR)")
    parser.add_argument("--blocks", type=int, default=16)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args(argv)

    from tfship.serving.config.batching import BatchingParameters
    from tfship.serving.event_loop import ServingLoop
    from tfship.serving.runtime import LoadOptions, Servable
    from tfship.serving.runtime import servable as servable_module
    from tfship.serving.runtime.batching import Batcher

    loop = ServingLoop(8, "bench").start()
    x = {"x": np.float32([[1.0]])}
    batching = BatchingParameters(max_batch_size=1024, batch_timeout_micros=0, num_batch_threads=2,
                                  max_enqueued_batches=1000)
    bypasses = Batcher.bypasses
    inline_bound = servable_module.INLINE_RUN_SECONDS

    def short_cut(on: bool, batched: bool) -> None:
        if batched:
            Batcher.bypasses = bypasses if on else (lambda self, size: False)  # type: ignore[method-assign]
        else:
            servable_module.INLINE_RUN_SECONDS = inline_bound if on else -1.0

    try:
        for batched, names in ((False, ("inline", "executor")), (True, ("bypass", "queue"))):
            servable = Servable.load("m", 1, args.model,
                                     LoadOptions(serving_loop=loop, batching=batching if batched else None))

            async def block(servable: Servable = servable) -> float:
                start = time.perf_counter()
                for _ in range(args.calls):
                    await servable.predict_async("", x, (), None, loop)
                return (time.perf_counter() - start) / args.calls

            per_call: dict[str, list[float]] = {name: [] for name in names}
            for i in range(args.blocks):
                for name in names if i % 2 == 0 else names[::-1]:
                    short_cut(name == names[0], batched)
                    per_call[name].append(loop.call(block()))
            short_cut(True, batched)
            servable.close()
            print(f"batching {'on ' if batched else 'off'}: " + ", ".join(
                f"{name} {statistics.median(v) * 1e6:,.0f} us/call" for name, v in per_call.items())
                + f" (medians of {args.blocks} alternating blocks of {args.calls} calls)", flush=True)
    finally:
        loop.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
