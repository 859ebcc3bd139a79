"""Server-side batching (TF Serving compat spec §7): merged runs, identical results, queue bounds, padding."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from tfship.serving.config.batching import BatchingParameters
from tfship.serving.runtime import LoadOptions, Servable
from tfship.serving.runtime.batching import Batcher

from tfship.errors import DeadlineExceededError, InvalidArgumentError, UnavailableError


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``condition`` until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.002)


class BatchLog:
    """on_batch hook: records batch sizes and signals the first one."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, size: int) -> None:
        with self.lock:
            self.sizes.append(size)


def params(**kwargs) -> BatchingParameters:
    kwargs.setdefault("num_batch_threads", 1)
    return BatchingParameters(**kwargs)


@pytest.fixture
def gated_batched(gated_model_dir):
    log = BatchLog()

    def load(**kwargs) -> tuple[Servable, BatchLog]:
        options = LoadOptions(batching=params(**kwargs), on_batch=log)
        servable = Servable.load("gated", 1, gated_model_dir, options)
        loaded.append(servable)
        return servable, log

    loaded: list[Servable] = []
    yield load
    for servable in loaded:
        servable.close()


def test_concurrent_callers_get_unbatched_results(half_plus_two_dir):
    log = BatchLog()
    options = LoadOptions(batching=params(max_batch_size=16, batch_timeout_micros=1000), on_batch=log)
    servable = Servable.load("half_plus_two", 123, half_plus_two_dir, options)
    try:
        def call(i: int) -> bool:
            x = np.float32([[i], [i + 0.5]])
            return bool(np.array_equal(servable.predict("", {"x": x})["y"], 0.5 * x + 2))

        with ThreadPoolExecutor(8) as pool:
            assert all(pool.map(call, range(300)))
        assert sum(log.sizes) == 600  # every row ran exactly once
        assert max(log.sizes) <= 16
    finally:
        servable.close()


def test_waiting_requests_are_merged_into_one_batch(gated_batched, open_gate):
    servable, log = gated_batched(max_batch_size=10)
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(servable.predict, "gated", {"x": np.float32([100])})
        wait_until(lambda: log.sizes == [1])  # the executor is now blocked inside the model
        rest = [pool.submit(servable.predict, "gated", {"x": np.float32([i])}) for i in range(5)]
        wait_until(lambda: servable._batcher.num_enqueued_tasks() == 5)
        open_gate(servable, 2)
        assert first.result(timeout=20)["y"].tolist() == [100.0]
        assert [f.result(timeout=20)["y"].tolist() for f in rest] == [[float(i)] for i in range(5)]
    assert log.sizes == [1, 5]


def test_full_queue_rejects_with_unavailable(gated_batched, open_gate):
    servable, log = gated_batched(max_batch_size=1, max_enqueued_batches=1)
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(servable.predict, "gated", {"x": np.float32([1])})
        wait_until(lambda: log.sizes == [1])
        queued = pool.submit(servable.predict, "gated", {"x": np.float32([2])})
        wait_until(lambda: servable._batcher.num_enqueued_tasks() == 1)
        with pytest.raises(UnavailableError) as err:
            servable.predict("gated", {"x": np.float32([3])})
        assert err.value.message == "The batch scheduling queue to which this task was submitted is full"
        open_gate(servable, 2)
        assert running.result(timeout=20)["y"].tolist() == [1.0]
        assert queued.result(timeout=20)["y"].tolist() == [2.0]


def test_deadline_applies_to_batched_runs(gated_batched):
    servable, _ = gated_batched(max_batch_size=4)
    with pytest.raises(DeadlineExceededError):
        servable.predict("gated", {"x": np.float32([1])}, timeout=0.2)
    np.testing.assert_array_equal(servable.predict("", {"x": np.float32([2])})["y"], np.float32([4]))


def test_deadline_passing_in_the_queue_fails_and_drops_the_task(gated_batched, open_gate):
    servable, log = gated_batched(max_batch_size=10)
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(servable.predict, "gated", {"x": np.float32([100])})
        wait_until(lambda: log.sizes == [1])  # holds the only execution slot until the gate opens
        waiting = pool.submit(servable.predict, "gated", {"x": np.float32([5])})
        wait_until(lambda: servable._batcher.num_enqueued_tasks() == 1)
        # joins the waiting batch, whose slot does not free up before its deadline
        with pytest.raises(DeadlineExceededError, match="waited in the batching queue"):
            servable.predict("gated", {"x": np.float32([7])}, timeout=0.3)
        assert servable._batcher.num_enqueued_tasks() == 1
        open_gate(servable, 2)
        assert running.result(timeout=20)["y"].tolist() == [100.0]
        assert waiting.result(timeout=20)["y"].tolist() == [5.0]
    assert log.sizes == [1, 1]  # the expired row never ran


def test_leader_past_its_deadline_hands_the_batch_on(gated_batched, open_gate):
    servable, log = gated_batched(max_batch_size=10)
    with ThreadPoolExecutor(3) as pool:
        running = pool.submit(servable.predict, "gated", {"x": np.float32([100])})
        wait_until(lambda: log.sizes == [1])
        leader = pool.submit(servable.predict, "gated", {"x": np.float32([1])}, timeout=1.5)
        wait_until(lambda: servable._batcher.num_enqueued_tasks() == 1)
        follower = pool.submit(servable.predict, "gated", {"x": np.float32([2, 3])})
        wait_until(lambda: servable._batcher.num_enqueued_tasks() == 2)  # same batch, led by 1
        with pytest.raises(DeadlineExceededError, match="waited in the batching queue"):
            leader.result(timeout=20)
        assert servable._batcher.num_enqueued_tasks() == 1
        open_gate(servable, 2)
        assert running.result(timeout=20)["y"].tolist() == [100.0]
        assert follower.result(timeout=20)["y"].tolist() == [2.0, 3.0]
    assert log.sizes == [1, 2]


def test_deadline_bounds_the_wait_for_an_underfull_batch(half_plus_two_dir):
    log = BatchLog()
    options = LoadOptions(batching=params(max_batch_size=2, batch_timeout_micros=60_000_000),
                          on_batch=log)
    servable = Servable.load("half_plus_two", 123, half_plus_two_dir, options)
    try:
        with pytest.raises(DeadlineExceededError, match="waited in the batching queue"):
            servable.predict("", {"x": np.float32([[1]])}, timeout=0.2)
        assert servable._batcher.num_enqueued_tasks() == 0
        # a full batch runs at once, and holds only its own rows
        out = servable.predict("", {"x": np.float32([[2], [4]])}, timeout=20)["y"]
        assert out.tolist() == [[3.0], [4.0]]
        assert log.sizes == [2]
    finally:
        servable.close()


def test_rest_request_past_its_deadline_in_the_queue_is_504(gated_model_dir, open_gate):
    httpx = pytest.importorskip("httpx")
    from tfship.serving.config.model_config import ModelEntry
    from tfship.serving.core.server_core import CoreOptions, ServerCore
    from tfship.serving.event_loop import ServingLoop
    from tfship.serving.rest.server import RestServer

    log = BatchLog()
    loaded: list[Servable] = []
    # one loop for the batcher and the REST front end, as tfship-model-server wires them
    serving_loop = ServingLoop(model_threads=2).start()

    def load(name, version, path):
        options = LoadOptions(batching=params(max_batch_size=10), on_batch=log, serving_loop=serving_loop)
        loaded.append(Servable.load(name, version, path, options))
        return loaded[-1]

    core = ServerCore(CoreOptions(max_num_load_retries=0), loader=load)
    core.manager.apply_config([ModelEntry("gated", str(gated_model_dir.parent))])
    rest = RestServer(core, port=0, timeout_ms=300, serving_loop=serving_loop)
    rest.start()
    url = f"http://127.0.0.1:{rest.port}/v1/models/gated:predict"
    try:
        (servable,) = loaded
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(servable.predict, "gated", {"x": np.float32([100])})
            wait_until(lambda: log.sizes == [1])
            response = httpx.post(url, json={"instances": [2.0]}, timeout=30)
            assert response.status_code == 504
            assert "waited in the batching queue" in response.json()["error"]
            assert servable._batcher.num_enqueued_tasks() == 0
            open_gate(servable, 1)
            assert running.result(timeout=20)["y"].tolist() == [100.0]
        response = httpx.post(url, json={"instances": [2.0]}, timeout=30)
        assert (response.status_code, response.json()) == (200, {"predictions": [4.0]})
        assert log.sizes == [1, 1]
    finally:
        rest.shutdown(drain_timeout=5)
        core.stop(drain_timeout=5)
        serving_loop.stop()


def test_allowed_batch_sizes_pad_and_unpad(half_plus_two):
    seen: list[int] = []

    def run(feeds, fetches, timeout):
        seen.append(next(iter(feeds.values())).shape[0])
        return half_plus_two._bundle.run(feeds, fetches, timeout)

    batcher = Batcher(run, params(max_batch_size=8, allowed_batch_sizes=(4, 8)))
    try:
        fetch = half_plus_two.signature_defs["serving_default"].outputs["y"].name
        (out,) = batcher.run({"x:0": np.float32([[1], [2], [3]])}, [fetch])
        np.testing.assert_array_equal(out, np.float32([[2.5], [3.0], [3.5]]))
        assert seen == [4]
    finally:
        batcher.close()


def test_pad_variable_length_inputs(half_plus_two):
    fetch = half_plus_two.signature_defs["serving_default"].outputs["y"].name
    batcher = Batcher(
        half_plus_two._bundle.run,
        params(max_batch_size=2, batch_timeout_micros=10_000_000, pad_variable_length_inputs=True),
    )
    try:
        with ThreadPoolExecutor(2) as pool:
            short = pool.submit(batcher.run, {"x:0": np.float32([[1, 2]])}, [fetch])
            long = pool.submit(batcher.run, {"x:0": np.float32([[1, 2, 3]])}, [fetch])
            # ragged rows ran as one padded batch; the short row is padded with its first value
            assert short.result(timeout=20)[0].tolist() == [[2.5, 3.0, 2.5]]
            assert long.result(timeout=20)[0].tolist() == [[2.5, 3.0, 3.5]]
    finally:
        batcher.close()


def test_oversized_task(half_plus_two_dir):
    options = LoadOptions(batching=params(max_batch_size=2))
    servable = Servable.load("half_plus_two", 123, half_plus_two_dir, options)
    try:
        with pytest.raises(InvalidArgumentError, match="Task size 3 is larger than maximum input batch size 2"):
            servable.predict("", {"x": np.float32([[1], [2], [3]])})
        with pytest.raises(InvalidArgumentError, match="at least one dimension"):
            servable.predict("", {"x": np.float32(1)})
    finally:
        servable.close()
    options = LoadOptions(batching=params(max_batch_size=2, enable_large_batch_splitting=True))
    servable = Servable.load("half_plus_two", 123, half_plus_two_dir, options)
    try:
        out = servable.predict("", {"x": np.float32([[1], [2], [3]])})["y"]
        np.testing.assert_array_equal(out, np.float32([[2.5], [3.0], [3.5]]))
    finally:
        servable.close()


@pytest.mark.parametrize(
    "sizes, message",
    [
        ((4, 2, 8), "allowed_batch_sizes entries must be monotonically increasing"),
        ((2, 4), "final entry in allowed_batch_sizes must equal max_batch_size"),
    ],
)
def test_bad_allowed_batch_sizes_fail_the_load(half_plus_two_dir, sizes, message):
    options = LoadOptions(batching=params(max_batch_size=8, allowed_batch_sizes=sizes))
    with pytest.raises(InvalidArgumentError, match=message):
        Servable.load("half_plus_two", 123, half_plus_two_dir, options)


def test_classify_and_regress_are_batched_too(half_plus_two_dir, example):
    log = BatchLog()
    options = LoadOptions(batching=params(max_batch_size=8), on_batch=log)
    servable = Servable.load("half_plus_two", 123, half_plus_two_dir, options)
    try:
        np.testing.assert_array_equal(servable.regress("regress_x_to_y", [example(x=2.0)]), np.float32([3.0]))
        assert servable.classify("classify_x_to_y", [example(x=4.0)]).scores.tolist() == [[4.0]]
        assert log.sizes == [1, 1]
    finally:
        servable.close()


def test_with_zero_timeout_an_underfull_batch_waits_for_the_running_one(gated_batched, open_gate):
    # two batch threads, but rows arriving during a run join ONE next batch instead of each
    # starting a one-row run on the idle thread
    servable, log = gated_batched(max_batch_size=10, num_batch_threads=2)
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(servable.predict, "gated", {"x": np.float32([100])})
        wait_until(lambda: log.sizes == [1])
        rest = [pool.submit(servable.predict, "gated", {"x": np.float32([i])}) for i in range(4)]
        wait_until(lambda: servable._batcher.num_enqueued_tasks() == 4)
        assert log.sizes == [1]  # the second thread stayed idle
        open_gate(servable, 2)
        assert first.result(timeout=20)["y"].tolist() == [100.0]
        assert [f.result(timeout=20)["y"].tolist() for f in rest] == [[float(i)] for i in range(4)]
    assert log.sizes == [1, 4]


def test_a_full_batch_runs_beside_a_running_one(gated_batched, open_gate):
    servable, log = gated_batched(max_batch_size=2, num_batch_threads=2)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(servable.predict, "gated", {"x": np.float32([100])})
        wait_until(lambda: log.sizes == [1])
        full = pool.submit(servable.predict, "gated", {"x": np.float32([1, 2])})
        wait_until(lambda: log.sizes == [1, 2])  # started on the second thread at once
        open_gate(servable, 3)
        assert full.result(timeout=20)["y"].tolist() == [1.0, 2.0]
        assert first.result(timeout=20)["y"].tolist() == [100.0]


def test_a_cancelled_caller_leaves_its_batch(gated_batched, open_gate):
    from concurrent.futures import CancelledError

    servable, log = gated_batched(max_batch_size=10)
    batcher = servable._batcher
    fetch = servable.signature_defs["gated"].outputs["y"].name
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(servable.predict, "gated", {"x": np.float32([100])})
        wait_until(lambda: log.sizes == [1])
        waiting = batcher._serving_loop.submit(batcher.submit({"x:0": np.float32([5])}, [fetch]))
        wait_until(lambda: batcher.num_enqueued_tasks() == 1)
        waiting.cancel()  # as grpc.aio cancels the handler of an RPC the client cancelled
        wait_until(lambda: batcher.num_enqueued_tasks() == 0)
        open_gate(servable, 1)
        assert first.result(timeout=20)["y"].tolist() == [100.0]
    with pytest.raises(CancelledError):
        waiting.result(timeout=5)
    assert log.sizes == [1]  # the cancelled row never ran


def test_predict_async_from_another_loop_reaches_the_batcher(half_plus_two_dir):
    # a servable loaded without the server's loop batches on its own; a caller on some other
    # event loop is handed over instead of awaiting a future of a foreign loop
    from tfship.serving.event_loop import ServingLoop

    servable = Servable.load("half_plus_two", 123, half_plus_two_dir,
                             LoadOptions(batching=params(max_batch_size=4)))
    other = ServingLoop(1).start()
    try:
        out = other.call(servable.predict_async("", {"x": np.float32([[2]])}, (), 10, other), timeout=30)
        assert out["y"].tolist() == [[3.0]]
    finally:
        other.stop()
        servable.close()


# --------------------------------------------------------------------------- the bypass


@pytest.fixture
def server_loop():
    from tfship.serving.event_loop import ServingLoop

    loop = ServingLoop(4, "test").start()
    yield loop
    loop.stop()


def load_on(path, serving_loop, log: BatchLog, **kwargs) -> Servable:
    options = LoadOptions(batching=params(**kwargs), on_batch=log, serving_loop=serving_loop,
                          enable_warmup=False)
    return Servable.load("m", 1, path, options)


def submit(serving_loop, servable: Servable, signature: str, x: list, timeout: float = 60):
    """predict_async on the server's loop, as the front ends call it: a concurrent future."""
    return serving_loop.submit(servable.predict_async(signature, {"x": np.float32(x)}, (), timeout, serving_loop))


def test_a_lone_task_skips_the_queue_and_counts_as_a_batch(half_plus_two_dir, server_loop):
    log = BatchLog()
    servable = load_on(half_plus_two_dir, server_loop, log, max_batch_size=8)
    try:
        for i in range(3):
            assert submit(server_loop, servable, "", [[float(i)]]).result(30)["y"].tolist() == [[0.5 * i + 2]]
        assert log.sizes == [1, 1, 1]
        assert servable._run_seconds  # ran as an unbatched call does (timed, so it may run inline)
    finally:
        servable.close()


def test_with_a_batch_timeout_a_lone_task_still_waits_for_company(half_plus_two_dir, server_loop):
    log = BatchLog()
    servable = load_on(half_plus_two_dir, server_loop, log, max_batch_size=2, batch_timeout_micros=60_000_000)
    try:
        with pytest.raises(DeadlineExceededError, match="waited in the batching queue"):
            submit(server_loop, servable, "", [[1.0]], timeout=0.2).result(30)
        # a task that fills a batch alone does not wait
        assert submit(server_loop, servable, "", [[2.0], [4.0]]).result(30)["y"].tolist() == [[3.0], [4.0]]
        assert log.sizes == [2]
    finally:
        servable.close()


def test_a_task_that_fills_a_batch_skips_the_queue_beside_a_running_batch(gated_model_dir, server_loop, open_gate):
    log = BatchLog()
    servable = load_on(gated_model_dir, server_loop, log, max_batch_size=2, num_batch_threads=2)
    try:
        held = submit(server_loop, servable, "gated", [100.0])  # alone: bypasses, blocks in the model
        wait_until(lambda: log.sizes == [1])
        assert submit(server_loop, servable, "", [1.0, 2.0]).result(30)["y"].tolist() == [2.0, 4.0]
        assert log.sizes == [1, 2]
        # an underfull task does not start beside the running one: it queues (zero timeout rule)
        queued = submit(server_loop, servable, "", [3.0])
        wait_until(lambda: servable._batcher.num_enqueued_tasks() == 1)
        assert log.sizes == [1, 2]
        open_gate(servable, 1)
        assert held.result(30)["y"].tolist() == [100.0]
        assert queued.result(30)["y"].tolist() == [6.0]
        assert log.sizes == [1, 2, 1]
    finally:
        servable.close()


def test_bypassed_runs_hold_a_batch_thread(gated_model_dir, server_loop, open_gate):
    log = BatchLog()
    servable = load_on(gated_model_dir, server_loop, log, max_batch_size=2, num_batch_threads=1)
    try:
        held = submit(server_loop, servable, "gated", [100.0])
        wait_until(lambda: log.sizes == [1])
        full = submit(server_loop, servable, "", [1.0, 2.0])  # fills a batch, but no thread is free
        wait_until(lambda: servable._batcher.num_enqueued_tasks() == 1)
        assert log.sizes == [1]
        open_gate(servable, 1)
        assert held.result(30)["y"].tolist() == [100.0]
        assert full.result(30)["y"].tolist() == [2.0, 4.0]
        assert log.sizes == [1, 2]
    finally:
        servable.close()
