"""Micro-batching of concurrent calls (client.batcher), from threads and from coroutines, over both
transports against tfship-model-server: every caller gets exactly its own rows, or its own error."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from client_test_models import multi_expected
from tfship.client import aio, connect
from tfship.client.batcher import BatcherStats, merge_inputs, merge_key, split_outputs

from tfship.errors import DeadlineExceededError, InvalidArgumentError

MODES = ["threads", "asyncio"]
TRANSPORTS = ["grpc", "rest"]


def call_together(mode: str, url: str, model: str, inputs: Sequence[Any], *,
                  timeouts: Sequence[float | None] | None = None, spy: list[int] | None = None,
                  seconds: list[float] | None = None, **batcher_kwargs: Any) -> tuple[list[Any], BatcherStats]:
    """Each input from its own thread (or coroutine), all started together; per caller its result
    or its exception, in input order. ``spy`` collects the rows of every request actually sent,
    ``seconds`` how long each caller waited."""
    timeouts = list(timeouts or [None] * len(inputs))
    waited = [0.0] * len(inputs)

    def spying(client: Any) -> None:
        if spy is None:
            return
        real = client.predict_detailed

        def counting(model: str, named: Any, **kwargs: Any) -> Any:
            spy.append(len(next(iter(named.values()))))
            return real(model, named, **kwargs)

        client.predict_detailed = counting

    if mode == "threads":
        with connect(url) as client, client.batcher(model, **batcher_kwargs) as batcher:
            spying(client)
            start = threading.Barrier(len(inputs))

            def one(i: int) -> Any:
                start.wait(60)
                t = time.monotonic()
                try:
                    return batcher.predict(inputs[i], timeout=timeouts[i])
                except Exception as exc:  # noqa: BLE001 - the caller's own outcome
                    return exc
                finally:
                    waited[i] = time.monotonic() - t

            with ThreadPoolExecutor(len(inputs)) as pool:
                results = list(pool.map(one, range(len(inputs))))
            if seconds is not None:
                seconds[:] = waited
            return results, batcher.stats

    async def main() -> tuple[list[Any], BatcherStats]:
        async with aio.connect(url) as client:
            spying(client)
            async with client.batcher(model, **batcher_kwargs) as batcher:

                async def one(i: int) -> Any:
                    t = time.monotonic()
                    try:
                        return await batcher.predict(inputs[i], timeout=timeouts[i])
                    finally:
                        waited[i] = time.monotonic() - t

                results = await asyncio.gather(*(one(i) for i in range(len(inputs))), return_exceptions=True)
            if seconds is not None:
                seconds[:] = waited
            return list(results), batcher.stats

    return asyncio.run(main())


def _url(server: Any, transport: str) -> str:
    return server.grpc_url if transport == "grpc" else server.rest_url


@pytest.fixture(scope="module")
def keras_in_memory(model_base: Path) -> Any:
    """The exported Keras model's serving signature, called in this process."""
    import tensorflow as tf

    fn = tf.saved_model.load(str(model_base / "keras" / "1")).signatures["serving_default"]
    return lambda x: next(iter(fn(tf.constant(x)).values())).numpy()


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mode", MODES)
def test_64_concurrent_callers_each_get_exactly_their_own_outputs(
        server: Any, keras_in_memory: Any, mode: str, transport: str) -> None:
    rows = np.random.default_rng(11).normal(size=(64, 1, 4)).astype(np.float32)
    results, stats = call_together(mode, _url(server, transport), "keras", list(rows),
                                   max_batch_size=16, max_delay_ms=50)
    expected = keras_in_memory(rows[:, 0, :])
    for i, result in enumerate(results):
        assert isinstance(result, np.ndarray), result
        np.testing.assert_allclose(result, expected[i:i + 1], rtol=1e-5, atol=1e-6)
    assert stats.calls == 64 and stats.merged >= 1 and stats.requests < 64 and stats.fallbacks == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mode", MODES)
def test_several_outputs_and_row_counts_split_back_per_caller(server: Any, mode: str, transport: str) -> None:
    rng = np.random.default_rng(12)
    inputs = [{"a": rng.normal(size=(n, 3)).astype(np.float32), "b": rng.integers(0, 99, n)}
              for n in (1, 3, 2, 1, 5, 1)]
    results, stats = call_together(mode, _url(server, transport), "multi", inputs, version=1, max_delay_ms=100)
    for x, result in zip(inputs, results, strict=True):
        for name, expected in multi_expected(1, x["a"], x["b"]).items():
            assert result[name].tolist() == expected.tolist()
    assert stats.merged >= 1


@pytest.mark.parametrize("mode", MODES)
def test_calls_that_cannot_merge_go_separately(server: Any, mode: str) -> None:
    # serving_default of "dtypes" is float32 [-1, -1]: widths 2, 3 and 5 cannot share a request.
    inputs = [np.full((1, width), i, np.float32) for i, width in enumerate([2, 3, 5] * 4)]
    sent: list[int] = []
    results, stats = call_together(mode, server.grpc_url, "dtypes", inputs, max_delay_ms=200, spy=sent)
    for x, result in zip(inputs, results, strict=True):
        np.testing.assert_array_equal(result, x)
    assert stats.requests >= 3 and sum(sent) == 12


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mode", MODES)
def test_one_bad_input_fails_only_its_caller(server: Any, mode: str, transport: str) -> None:
    # "checked" fails on NaN with INVALID_ARGUMENT; the NaN row merges with the others (same shape).
    inputs = [np.full((1, 2), i, np.float32) for i in range(16)]
    inputs[5] = np.array([[1.0, np.nan]], np.float32)
    results, stats = call_together(mode, _url(server, transport), "dtypes", inputs, signature="checked",
                                   max_delay_ms=200)
    assert isinstance(results[5], InvalidArgumentError)
    assert "NaN" in results[5].message
    for i, (x, result) in enumerate(zip(inputs, results, strict=True)):
        if i != 5:
            np.testing.assert_array_equal(result, x)
    assert stats.fallbacks >= 1


@pytest.mark.parametrize("mode", MODES)
def test_a_callers_timeout_holds_while_its_batch_waits(server: Any, mode: str) -> None:
    # The batch waits up to 5 s for company; one caller allows only 0.2 s of that.
    inputs = [np.full((1, 2), 1.0, np.float32), np.full((1, 2), 2.0, np.float32)]
    sent: list[int] = []
    seconds: list[float] = []
    results, _ = call_together(mode, server.grpc_url, "dtypes", inputs, timeouts=[0.2, 30],
                               max_delay_ms=5000, spy=sent, seconds=seconds)
    assert isinstance(results[0], DeadlineExceededError)
    assert "batched call" in results[0].message
    assert seconds[0] < 4  # it left well before the batch was due
    np.testing.assert_array_equal(results[1], inputs[1])
    assert sum(sent) == 1  # the timed-out caller's row was left out of the request


def test_the_batcher_asks_for_sane_settings(grpc_client: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="max_batch_size >= 1"):
        grpc_client.batcher("dtypes", max_batch_size=0)


def test_merging_and_splitting_rows() -> None:
    a = {"x": np.ones((2, 3), np.float32), "y": np.zeros(2, np.int64)}
    b = {"x": np.full((1, 3), 2, np.float32), "y": np.ones(1, np.int64)}
    assert merge_key(a) == merge_key(b)
    assert merge_key({"x": np.ones((2, 4), np.float32)}) != merge_key({"x": np.ones((2, 3), np.float32)})
    assert merge_key({"x": np.ones((2, 3), np.float64)}) != merge_key({"x": np.ones((2, 3), np.float32)})
    assert merge_key({"x": np.float32(1)}) is None
    assert merge_key({"x": np.ones(2), "y": np.ones(3)}) is None  # no common number of rows
    merged = merge_inputs([a, b])
    assert merged["x"].shape == (3, 3) and merged["y"].tolist() == [0, 0, 1]
    parts = split_outputs({"z": np.arange(3)}, [2, 1])
    assert parts is not None and [p["z"].tolist() for p in parts] == [[0, 1], [2]]
    assert split_outputs({"z": np.arange(4)}, [2, 1]) is None  # not one row per input row
    assert split_outputs({"z": np.float32(3)}, [2, 1]) is None


def test_a_group_flushed_twice_is_sent_once(server: Any) -> None:
    # An asyncio group stays open while its send waits for a request slot, so its timer and its
    # filling up can both flush it; the second flush must not send the same calls again.
    async def main() -> tuple[Any, BatcherStats]:
        async with aio.connect(server.grpc_url) as client:
            await client.metadata("dtypes")
            async with client.batcher("dtypes", max_delay_ms=60_000, max_concurrent_batches=2) as batcher:
                call = asyncio.ensure_future(batcher.predict(np.ones((1, 2), np.float32)))
                for _ in range(1000):
                    if batcher._open:
                        break
                    await asyncio.sleep(0.001)
                group = next(iter(batcher._open.values()))
                batcher._flush(group)
                batcher._flush(group)
                return await asyncio.wait_for(call, 30), batcher.stats

    result, stats = asyncio.run(main())
    assert result.tolist() == [[1.0, 1.0]] and stats.requests == 1
